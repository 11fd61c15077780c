"""Format ``template``: a site's own Jinja2 JSON body, for any other CRM (CONTRACT §5).

The template is rendered in Jinja2's immutable sandbox (no attribute tricks, no
mutation of the lead) with autoescaping off, and these names:

* ``lead``: the ExternalLead (camelCase, as in the ``external-lead`` format);
* ``event``: ``{id, type, created_at}`` (``created_at`` ISO-8601 UTC, ``Z``);
* ``site``: ``{id, company}``;
* ``fields``: captured fields by name, canonical names (``name``, ``email``,
  ``phone``, ``company``, ``message``) resolved through their aliases;
* ``transcript_text``: the readable transcript.

``{{ value | tojson }}`` writes any value as JSON (strings quoted and escaped,
missing values as ``null``). The output must be valid JSON; when it is not, the
delivery is dead at once (a retry would render the same text). Header values in
``webhook.headers`` are templates too. The request carries the Standard Webhooks
headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` with
secrets) exactly as the ``external-lead`` format does, over the rendered body.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from server.errors import ConfigError, DeliveryError
from server.formats import LeadEvent, SendResult
from server.formats.external_lead import sign
from server.formats.transcript_text import lead_field, lead_fields, readable_transcript

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
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
_CANONICAL = ("name", "email", "phone", "company", "message")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _tojson(value: Any) -> str:
    if isinstance(value, Undefined):
        return "null"
    return json.dumps(value, ensure_ascii=False, default=str)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=False, undefined=ChainableUndefined)
    env.filters["tojson"] = _tojson
    return env


_ENV = _environment()


@functools.lru_cache(maxsize=256)
def _compile(text: str) -> Template:
    return _ENV.from_string(text)


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


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render template ``text``.

    Raises:
        DeliveryError: a syntax error, or the template failed while rendering.
    """
    try:
        template = _compile(text)
    except TemplateSyntaxError as exc:
        raise DeliveryError(f"template syntax error at {_syntax_message(exc)}") from exc
    try:
        return template.render(context)
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
    text = event.site.webhook.template
    if not text:
        raise DeliveryError("format 'template' needs a template")
    body = render(text, template_context(event))
    _check_json(body)
    return body


def _render_headers(event: LeadEvent, context: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in event.site.webhook.headers.items():
        if not _HEADER_NAME.match(name):
            raise DeliveryError(f"header name {name!r} is not a valid HTTP header name")
        rendered = render(value, context).strip()
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
    if event.site.webhook.secrets:
        headers["webhook-signature"] = sign(event.site.webhook.secrets, event.id, now, body)
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
        _compile(text)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"template syntax error at {_syntax_message(exc)}") from None
    if not json_body:
        return
    try:
        _check_json(render(text, _SAMPLE))
    except DeliveryError as exc:
        raise ConfigError(f"{exc} (with a sample lead)") from None


async def send(
    http: httpx.AsyncClient, event: LeadEvent, *, redis: Redis | None = None
) -> SendResult:
    """POST the rendered body to the webhook URL; a bad template is dead at once."""
    url = event.site.webhook.url
    if not url:
        return SendResult(ok=False, retryable=False, error="format 'template' needs a url")
    try:
        headers, body = build_request(event, datetime.now(UTC))
    except DeliveryError as exc:
        return SendResult(ok=False, retryable=False, error=str(exc))
    response = await http.post(url, content=body.encode(), headers=headers)
    return SendResult.from_response(response)
