"""Format ``template``: a site's own Jinja2 JSON body, for any other CRM (README, CRMs).

The template is rendered in Jinja2's immutable sandbox (no attribute tricks, no
mutation of the lead) with autoescaping off, and these names:

* ``lead``: the ExternalLead (camelCase, as in the ``external-lead`` format);
* ``event``: ``{id, type, created_at}`` (``created_at`` ISO-8601 UTC, ``Z``);
* ``site``: ``{id, company}``;
* ``fields``: captured fields by name, canonical names (``name``, ``email``,
  ``phone``, ``company``, ``message``) resolved through their aliases;
* ``transcript_text``: the readable transcript.

``{{ value | tojson }}`` writes any value as JSON (strings quoted and escaped,
missing values as ``null``). Every other ``{{ … }}`` in a body is JSON-escaped
too (a string without its quotes, so ``"{{ fields.name }}"`` is a JSON string
whatever the visitor typed: visitor text cannot add keys). The output must be
valid JSON; when it is not, the delivery is dead at once (a retry would render
the same text).

A template cannot freeze the process: it renders in a worker thread within
``BUDGET_S`` of wall-clock time (a trace hook stops it past the deadline), its
output is capped at ``MAX_BODY`` characters while it streams, and ``*``, ``**``
and ``%`` refuse operands that would build huge values in one C call (``'a' *
10**9``), as do filters given a size argument past the cap. Header values in
``webhook.headers`` are templates too. The request carries the Standard Webhooks
headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` with
secrets) exactly as the ``external-lead`` format does, over the rendered body.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ConfigError, DeliveryError
from . import Context, Format, LeadEvent, SendResult
from .external_lead import sign
from .transcript_text import lead_field, lead_fields, readable_transcript

__all__ = [
    "BUDGET_S",
    "MAX_BODY",
    "build_request",
    "render",
    "render_body",
    "send",
    "template_context",
    "validate_template",
]

MAX_BODY = 1_000_000
"""Largest rendered body, in characters."""
BUDGET_S = 0.2
"""Longest a template may render, in wall-clock seconds."""
MAX_POWER_BITS = 4096
"""Largest integer ``**`` may build, in bits (a 1,234-digit number)."""
_CANONICAL = ("name", "email", "phone", "company", "message")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature")


class _Json(str):
    """Text that is JSON already (``tojson``'s output): written as it is."""


def _tojson(value: Any) -> _Json:
    if isinstance(value, Undefined):
        return _Json("null")
    return _Json(json.dumps(value, ensure_ascii=False, default=str))


def _json_escaped(value: Any) -> str:
    """How a body writes ``{{ value }}``: JSON, a string without its quotes."""
    if isinstance(value, _Json | Undefined):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    return json.dumps(value, ensure_ascii=False, default=str)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _bounded_binop(operator: str, left: Any, right: Any) -> Any:
    """``*``, ``**`` and ``%`` of the template language, refusing huge results."""
    if operator == "*":
        count = right if _size(left) else left
        if isinstance(count, int) and max(_size(left), _size(right)) * count > MAX_BODY:
            raise SecurityError("a repeated value would be larger than the body cap")
        return left * right
    if operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right * abs(left).bit_length() > MAX_POWER_BITS:
                raise SecurityError("a power would be too large")
        return left**right
    if isinstance(left, str) and re.search(r"%[-+ #0]*(\d{7,}|\*)", left):
        raise SecurityError("a format width would be larger than the body cap")
    return left % right


def _bounded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that refuses size arguments (``center(10**9)``) past the body cap."""

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and value > MAX_BODY:
                raise SecurityError(f"a filter argument is larger than the body cap ({value})")
        return function(*args, **kwargs)

    return bounded


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: JinjaContext, operator: str, left: Any, right: Any) -> Any:
        return _bounded_binop(operator, left, right)


def _environment(*, json_body: bool) -> _Sandbox:
    env = _Sandbox(
        autoescape=False,
        undefined=ChainableUndefined,
        finalize=_json_escaped if json_body else None,
    )
    env.filters = {name: _bounded_filter(f) for name, f in env.filters.items()}
    env.filters["tojson"] = _tojson
    return env


_BODY_ENV = _environment(json_body=True)
_HEADER_ENV = _environment(json_body=False)


@functools.lru_cache(maxsize=256)
def _compile(text: str, json_body: bool = True) -> Template:
    return (_BODY_ENV if json_body else _HEADER_ENV).from_string(text)


class _OverBudget(Exception):
    pass


def _deadline_tracer(deadline: float) -> Callable[[FrameType, str, Any], Any]:
    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _OverBudget(f"template took longer than {BUDGET_S * 1000:.0f} ms")
        return trace

    return trace


def _stream(template: Template, context: Mapping[str, Any]) -> str:
    """Render within ``BUDGET_S`` and ``MAX_BODY``, in whichever thread calls it."""
    parts: list[str] = []
    size = 0
    previous = sys.gettrace()
    sys.settrace(_deadline_tracer(time.monotonic() + BUDGET_S))
    try:
        for part in template.generate(context):
            size += len(part)
            if size > MAX_BODY:
                raise DeliveryError(f"template output is larger than {MAX_BODY} characters")
            parts.append(part)
    finally:
        sys.settrace(previous)
    return "".join(parts)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def template_context(event: LeadEvent) -> dict[str, Any]:
    """The names a template sees for ``event`` (see the module docstring)."""
    lead = event.lead
    fields: dict[str, str] = dict(lead_fields(lead))
    for name in _CANONICAL:
        value = lead_field(lead, name)
        if value is not None:
            fields[name] = value
    return {
        "lead": lead,
        "event": {"id": event.id, "type": event.type, "created_at": _iso(event.created_at)},
        "site": {"id": event.site.id, "company": event.site.company},
        "fields": fields,
        "transcript_text": readable_transcript(lead),
    }


def _syntax_message(exc: TemplateSyntaxError) -> str:
    return f"line {exc.lineno}: {exc.message}"


def render(text: str, context: Mapping[str, Any], *, json_body: bool = True) -> str:
    """Render template ``text`` within the time and size budget.

    Raises:
        DeliveryError: a syntax error, or the template failed while rendering.
    """
    try:
        template = _compile(text, json_body)
    except TemplateSyntaxError as exc:
        raise DeliveryError(f"template syntax error at {_syntax_message(exc)}") from exc
    try:
        return _stream(template, context)
    except DeliveryError:
        raise
    except Exception as exc:  # a site's template may raise anything; it is their bug
        raise DeliveryError(f"template failed: {type(exc).__name__}: {exc}") from exc


def _check_json(body: str) -> None:
    if len(body) > MAX_BODY:
        raise DeliveryError(f"template output is larger than {MAX_BODY} characters")
    try:
        json.loads(body)
    except ValueError as exc:
        raise DeliveryError(f"template output is not valid JSON: {exc}") from exc


def render_body(event: LeadEvent) -> str:
    """The rendered, JSON-checked body for ``event``.

    Raises:
        DeliveryError: the site has no template, it fails, or its output is not JSON.
    """
    text = event.destination.template
    if not text:
        raise DeliveryError("format 'template' needs a template")
    body = render(text, template_context(event))
    _check_json(body)
    return body


def _render_headers(event: LeadEvent, context: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in event.destination.headers.items():
        if not _HEADER_NAME.match(name):
            raise DeliveryError(f"header name {name!r} is not a valid HTTP header name")
        rendered = render(value, context, json_body=False).strip()
        if any(ch in rendered for ch in "\r\n\0"):
            raise DeliveryError(f"header {name} renders to a value with a line break")
        headers[name.lower()] = rendered
    return headers


def build_request(event: LeadEvent, now: datetime) -> tuple[dict[str, str], str]:
    """Headers and body of one attempt, signed with a fresh timestamp.

    A site's headers may set ``content-type`` but never the ``webhook-*`` ones.

    Raises:
        DeliveryError: the template or a header template fails, or the body is not JSON.
    """
    now = now.astimezone(UTC).replace(microsecond=0)
    context = template_context(event)
    body = render_body(event)
    headers = {"content-type": "application/json"}
    extra = _render_headers(event, context)
    headers.update({k: v for k, v in extra.items() if k not in _SIGNED})
    headers["webhook-id"] = event.id
    headers["webhook-timestamp"] = str(int(now.timestamp()))
    if event.destination.secrets:
        headers["webhook-signature"] = sign(event.destination.secrets, event.id, now, body)
    return headers, body


_SAMPLE: dict[str, Any] = {
    "lead": {
        "userId": "v_sample",
        "sessionId": "s_sample",
        "fields": [
            {"name": "name", "value": "Sam Sample"},
            {"name": "email", "value": "sam@example.com"},
            {"name": "phone", "value": "+12025550123"},
            {"name": "message", "value": "Hello"},
        ],
        "source": "chat-widget",
        "company": "Example Co",
        "transcript": [],
        "isAbandoned": False,
    },
    "event": {"id": "evt_sample", "type": "lead.completed", "created_at": "2026-01-01T00:00:00Z"},
    "site": {"id": "example", "company": "Example Co"},
    "fields": {"name": "Sam Sample", "email": "sam@example.com", "phone": "+12025550123"},
    "transcript_text": "",
}


def validate_template(text: str, *, json_body: bool = True) -> None:
    """Check a site's template at config load.

    The template must compile; a body template (``json_body``) must also render
    a sample lead to valid JSON. Pass ``json_body=False`` for header templates.

    Raises:
        ConfigError: the template does not compile, fails, or yields no JSON.
    """
    try:
        _compile(text, json_body)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"template syntax error at {_syntax_message(exc)}") from None
    if not json_body:
        return
    try:
        _check_json(render(text, _SAMPLE))
    except DeliveryError as exc:
        raise ConfigError(f"{exc} (with a sample lead)") from None


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    """POST the rendered body to the webhook URL; a bad template is dead at once."""
    url = event.destination.url
    assert url, "the template format requires url"
    try:
        # off the event loop: a slow template must not hold up acks
        headers, body = await asyncio.to_thread(build_request, event, datetime.now(UTC))
    except DeliveryError as exc:
        return SendResult(ok=False, retryable=False, error=str(exc))
    response = await ctx.http.post(url, content=body.encode(), headers=headers)
    return SendResult.from_response(response)


FORMAT = Format("template", send, requires=("template", "url"))
