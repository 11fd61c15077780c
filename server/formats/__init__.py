"""Formats: turn an event into what one destination expects (CONTRACT §5, §9).

A format is one module: its decisions in pure functions (event -> request,
response -> result), an ``Options`` model of its own destination keys, and one
``send(ctx, event)`` coroutine that runs them. The module ends with
``FORMAT = Format(...)``; :data:`MODULES` is the registry (name -> module), and
config, ``check``, the CLI and delivery learn every format from it.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from ..sites import Destination, FieldProblem, Site

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "MODULES",
    "Context",
    "Format",
    "LeadEvent",
    "NoOptions",
    "Request",
    "SendResult",
    "destination",
    "get",
    "send",
]


@dataclass(frozen=True)
class LeadEvent:
    """One event to deliver to one destination: ``lead`` is the ExternalLead (camelCase
    JSON object), with ``refId`` the id this destination gave the record before."""

    id: str
    type: str  # "lead.completed" | "lead.abandoned" | "lead.test"
    created_at: datetime  # aware, UTC
    site: Site
    lead: dict[str, Any]
    destination: Destination = field(default_factory=Destination)
    resume_url: str | None = None
    """The visitor's way back into the chat (``lead.abandoned`` only, CONTRACT §11)."""

    @property
    def options(self) -> Any:
        """The destination's format options (the format's ``Options`` model)."""
        return self.destination.options


@dataclass(frozen=True)
class Context:
    """What a format may use to send: the HTTP client for this destination (its address
    policy applied), Redis for rate budgets and tokens shared by every worker (``None``:
    none), the absolute base of links into the admin (``PUBLIC_URL``) and outgoing mail
    (``SMTP_URL``, ``SMTP_FROM``)."""

    http: httpx.AsyncClient
    redis: Redis | None = None
    public_url: str = "http://127.0.0.1:8000"
    smtp_url: str | None = None
    smtp_from: str | None = None

    def admin_link(self, session_id: str) -> str:
        """The session's page in the admin (CONTRACT §9)."""
        return f"{self.public_url.rstrip('/')}/admin/live?session={quote(session_id, safe='')}"


class NoOptions(BaseModel):
    """Options of a format that has no keys of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Format:
    """One format's declaration (the last line of its module).

    ``requires``: shared destination keys it cannot do without (``url``, ``template``);
    ``default_url``: the vendor's API base when ``url`` is unset; ``target``: the option
    key holding the address deliveries connect to, for a format that does not use
    ``url`` (``salesforce_login_url``), so it is checked like a webhook URL.
    """

    name: str
    send: Callable[[Context, LeadEvent], Awaitable[SendResult]]
    options: type[BaseModel] = NoOptions
    requires: tuple[str, ...] = ()
    default_url: str | None = None
    target: str | None = None

    def target_of(self, destination: Destination) -> str | None:
        """The address deliveries connect to, checked like a webhook URL."""
        if self.target is not None:
            value = getattr(destination.options, self.target, None)
            return value if isinstance(value, str) else None
        return destination.url or self.default_url


MODULES = {
    "external-lead": "external_lead",
    "copper": "copper",
    "pulse": "pulse",
    "template": "template",
    "hubspot": "hubspot",
    "salesforce": "salesforce",
    "pipedrive": "pipedrive",
    "email": "email_alert",
    "slack": "slack",
    "reminder": "reminder",
}
"""The format registry: name -> module in this package (imported when first used)."""
BUILT_IN = frozenset({"reminder"})
"""Formats of chatlead's own destinations, never configured by hand."""


_SHARED_KEYS = frozenset(Destination.model_fields) - {"options"}


def destination(raw: Mapping[str, Any]) -> Destination:
    """A destination from its flat keys (TOML table or environment), options validated
    by its format's model.

    Raises:
        FieldProblem: an unknown format, or a key the format requires is missing.
        pydantic.ValidationError: a key is wrong (its location names it).
    """
    name = raw.get("format", "external-lead")
    if name not in MODULES or name in BUILT_IN:
        choices = ", ".join(m for m in MODULES if m not in BUILT_IN)
        raise FieldProblem("format", f"unknown format {name!r}; use {choices}")
    declared = get(name)
    own = {k: v for k, v in raw.items() if k not in _SHARED_KEYS}
    missing = [key for key, spec in declared.options.model_fields.items() if spec.is_required()]
    for key in missing:
        if own.get(key) in (None, ""):
            raise FieldProblem(key, f"required for format {name!r}")
    options = declared.options(**own)
    made = Destination(**{k: v for k, v in raw.items() if k in _SHARED_KEYS}, options=options)
    for key in declared.requires:
        if not getattr(made, key):
            raise FieldProblem(key, f"required for format {name!r}")
    if made.template and made.url is None:
        raise FieldProblem("url", "required with a template")
    return made


def get(name: str) -> Format:
    """The format called ``name``.

    Raises:
        KeyError: no such format.
    """
    module = importlib.import_module(f"{__name__}.{MODULES[name]}")
    declared: Format = module.FORMAT
    return declared


@dataclass(frozen=True)
class SendResult:
    """Outcome of one delivery attempt, as recorded in the delivery log."""

    ok: bool
    retryable: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    ref_id: str | None = None
    response_snippet: str = ""
    sent: bool = True  # False: held back by our own rate budget; not an attempt

    @classmethod
    def from_response(cls, response: httpx.Response, ref_id: str | None = None) -> SendResult:
        """Classify an HTTP answer by the delivery rules (README, Delivery)."""
        code = response.status_code
        ok = 200 <= code < 300
        retryable = code in (408, 429) or code >= 500
        return cls(
            ok=ok,
            retryable=retryable,
            status_code=code,
            error=None if ok else f"HTTP {code}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            ref_id=ref_id,
            response_snippet=response.text[:300],
        )

    def redacted(self, *secrets: str | None) -> SendResult:
        """A copy with every given secret masked in ``error`` and ``response_snippet``."""
        error, snippet = self.error, self.response_snippet
        for secret in secrets:
            if secret:
                error = error.replace(secret, "***") if error else error
                snippet = snippet.replace(secret, "***")
        return replace(self, error=error, response_snippet=snippet)


@dataclass(frozen=True)
class Request:
    """One HTTP request a format decided to make; ``json`` is the body (``None``: none)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None

    async def send(self, http: httpx.AsyncClient) -> httpx.Response:
        return await http.request(self.method, self.url, headers=self.headers, json=self.json)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    """Deliver ``event`` to its destination in the destination's format.

    Transport errors (``httpx.TransportError``, timeouts included) propagate.
    """
    return await get(event.destination.format).send(ctx, event)
