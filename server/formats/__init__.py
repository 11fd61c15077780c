"""CRM formats: turn a lead event into the HTTP request(s) a target expects.

Each format module keeps its decisions in pure functions (event -> request,
response -> result) and exposes one ``send(http, event)`` coroutine that runs
them over an ``httpx.AsyncClient``. :func:`send` picks the site's format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ..sites import Site

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["LeadEvent", "Request", "SendResult", "send"]


@dataclass(frozen=True)
class LeadEvent:
    """One event to deliver: ``lead`` is the ExternalLead (camelCase JSON object)."""

    id: str
    type: str  # "lead.completed" | "lead.abandoned" | "lead.test"
    created_at: datetime  # aware, UTC
    site: Site
    lead: dict[str, Any]


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


class Sender(Protocol):
    def __call__(
        self, http: httpx.AsyncClient, event: LeadEvent, *, redis: Redis | None = None
    ) -> Awaitable[SendResult]: ...


async def _external_lead(
    http: httpx.AsyncClient, event: LeadEvent, *, redis: Redis | None = None
) -> SendResult:
    from . import external_lead

    return await external_lead.send(http, event)


def _senders() -> dict[str, Sender]:
    from . import copper, pulse, template

    return {
        "external-lead": _external_lead,
        "copper": copper.send,
        "pulse": pulse.send,
        "template": template.send,
    }


async def send(
    http: httpx.AsyncClient, event: LeadEvent, *, redis: Redis | None = None
) -> SendResult:
    """Deliver ``event`` to its site's webhook in the site's format.

    ``redis`` carries rate budgets shared by every worker (Copper's 180
    requests/min); without it no budget is kept. Transport errors
    (``httpx.TransportError``, timeouts included) propagate to the caller.
    """
    return await _senders()[event.site.webhook.format](http, event, redis=redis)
