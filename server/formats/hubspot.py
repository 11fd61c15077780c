"""Format ``hubspot``: a HubSpot CRM contact and the transcript as a note (CONTRACT §9).

HubSpot's CRM v3 API (base ``https://api.hubapi.com``, or the destination's ``url``)
authenticates every call with ``Authorization: Bearer <hubspot_token>`` (a private
app's access token). One delivery makes these requests:

1. the lead already has a HubSpot id (``refId``): ``PATCH /crm/v3/objects/contacts/{refId}``;
   a 404 there (the contact was deleted in HubSpot) falls through, once, to 2/3;
2. the visitor gave an email: ``POST /crm/v3/objects/contacts/search`` (``email EQ``,
   ``limit 1``), then ``PATCH`` the hit, or 3 when there is none;
3. ``POST /crm/v3/objects/contacts``. HubSpot's search is eventually consistent, so a
   contact created a moment ago may not be found yet: the create is then answered
   ``409 CONFLICT`` ("Contact already exists. Existing ID: N") and we ``PATCH`` N;
4. ``POST /crm/v3/objects/notes``: the readable transcript (HTML-escaped) with the page
   and UTM attribution, associated with the contact (type 202, note to contact).

The contact's ``id`` becomes the lead's ``refId``; it is returned also when the note
step fails, so the retry updates that contact instead of creating another.

Only a created contact gets ``lifecyclestage: lead`` and ``hs_lead_status: NEW``; an
update (known ``refId``, search hit, 409) leaves both alone, as a sales person may
have moved them on (and HubSpot moves a lifecycle stage only forward anyway).
HubSpot's own analytics-source properties are read-only, so attribution goes into
the note. Empty values are never sent (an empty string would clear a property).

HubSpot allows 100 requests per 10 seconds per private app and 4 searches a second
per token; all workers draw from shared budgets in Redis below both (:mod:`.budget`).
A budget used up before anything was sent defers the event (not an attempt); part-way
through it ends the attempt as retryable. A 429 is retried after ``Retry-After``
(10 s without one); 401/403 are dead letters ("HubSpot token rejected").
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from datetime import UTC
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from . import Context, Format, LeadEvent, Request, SendResult, budget, parse_retry_after
from .transcript_text import TRANSCRIPT_LIMIT, e164, lead_field, name_parts, readable_transcript

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BUDGET_LIMIT",
    "BUDGET_WINDOW",
    "HUBSPOT_BASE",
    "NOTE_TO_CONTACT",
    "SEARCH_LIMIT",
    "TOKEN_REJECTED",
    "Options",
    "build_create",
    "build_note",
    "build_search",
    "build_update",
    "contact_properties",
    "existing_id",
    "failure_of",
    "note_body",
    "parse_id",
    "parse_search",
    "send",
]

HUBSPOT_BASE = "https://api.hubapi.com"
BUDGET_LIMIT = 90
"""Requests per :data:`BUDGET_WINDOW` and token: under HubSpot's 100 per 10 seconds."""
BUDGET_WINDOW = 10.0
SEARCH_LIMIT = 4
"""Searches per second and token HubSpot's CRM search endpoints accept."""
RATE_LIMITED_BACKOFF = 10.0
"""Wait after a 429 that names no ``Retry-After``: HubSpot's window is 10 seconds."""
NOTE_TO_CONTACT = 202
"""HubSpot-defined association type id of a note to a contact."""
NOTE_LIMIT = 65_536
"""Longest ``hs_note_body`` HubSpot stores, in characters."""
TOKEN_REJECTED = "HubSpot token rejected; check hubspot_token"
ERROR_LIMIT = 300
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
ATTRIBUTION = {"page_url": "Page", "referrer": "Referrer", "utm_source": "UTM source"}
ATTRIBUTION |= {"utm_medium": "UTM medium", "utm_campaign": "UTM campaign"}
"""Lead fields (the page data the widget sent) quoted at the top of the note."""


class Options(BaseModel):
    """A ``hubspot`` destination's own keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hubspot_token: str = Field(min_length=1)


def _base(event: LeadEvent) -> str:
    return (event.destination.url or HUBSPOT_BASE).rstrip("/")


def _headers(event: LeadEvent) -> dict[str, str]:
    token = event.options.hubspot_token
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# --- requests (pure) --------------------------------------------------------------


def contact_properties(event: LeadEvent, *, create: bool = True) -> dict[str, str]:
    """HubSpot contact properties for the event's lead; absent fields are left out.

    ``create=False`` (a ``PATCH`` of an existing contact) leaves out ``lifecyclestage``
    and ``hs_lead_status``, so a stage or status a sales person set is kept.
    """
    lead = event.lead
    first, last = name_parts(lead)
    phone = lead_field(lead, "phone")
    found = {
        "email": lead_field(lead, "email"),
        "firstname": first,
        "lastname": last,
        "phone": e164(phone, event.site.phone_region) if phone else None,
        "company": lead_field(lead, "company"),
    }
    props = {name: value for name, value in found.items() if value}
    if create:
        props["lifecyclestage"] = "lead"
        props["hs_lead_status"] = "NEW"
    return props


def build_search(event: LeadEvent) -> Request | None:
    """The search for a contact with the lead's email; ``None`` when it has none."""
    email = lead_field(event.lead, "email")
    if not email:
        return None
    search = {"propertyName": "email", "operator": "EQ", "value": email}
    body = {"filterGroups": [{"filters": [search]}], "limit": 1}
    url = f"{_base(event)}/crm/v3/objects/contacts/search"
    return Request("POST", url, _headers(event), body)


def build_create(event: LeadEvent) -> Request:
    body = {"properties": contact_properties(event)}
    return Request("POST", f"{_base(event)}/crm/v3/objects/contacts", _headers(event), body)


def build_update(event: LeadEvent, contact_id: str, *, with_email: bool = True) -> Request:
    """``with_email=False``: the email is left as HubSpot has it (another contact owns the
    one the visitor gave)."""
    properties = contact_properties(event, create=False)
    if not with_email:
        properties.pop("email", None)
    body = {"properties": properties}
    url = f"{_base(event)}/crm/v3/objects/contacts/{contact_id}"
    return Request("PATCH", url, _headers(event), body)


def _html_line(line: str) -> str:
    text = html.escape(line)  # keep the indent of a message's continuation lines
    return "&nbsp;" * (len(text) - len(text.lstrip(" "))) + text.lstrip(" ")


def note_body(event: LeadEvent, limit: int = NOTE_LIMIT) -> str:
    """The note as HTML: a heading, the attribution, then the readable transcript.

    Every text is HTML-escaped and lines are separated by ``<br>``; the transcript is
    cut shorter (by whole lines) until the note fits in ``limit`` characters.
    """
    lead = event.lead
    heading = "Website chat lead (abandoned)" if lead.get("isAbandoned") else "Website chat lead"
    head = [f"<b>{html.escape(heading)}</b>"]
    for name, label in ATTRIBUTION.items():
        value = lead_field(lead, name)
        if value:
            head.append(f"{label}: {html.escape(value)}")
    room = TRANSCRIPT_LIMIT
    while True:
        transcript = readable_transcript(lead, room, event.resume_url)
        lines = [_html_line(line) for line in transcript.splitlines()]
        body = "<br>\n".join([*head, "", *lines] if lines else head)
        if len(body) <= limit or room <= 0:
            return body[:limit]
        room = max(0, min(room - 1, room * limit // len(body)))  # escaping lengthens


def build_note(event: LeadEvent, contact_id: str) -> Request:
    """The transcript note on contact ``contact_id``, timed at the event's creation."""
    when = event.created_at.astimezone(UTC).isoformat(timespec="milliseconds")
    properties = {"hs_timestamp": when.replace("+00:00", "Z"), "hs_note_body": note_body(event)}
    to_contact = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}
    association = {"to": {"id": contact_id}, "types": [to_contact]}
    body = {"properties": properties, "associations": [association]}
    return Request("POST", f"{_base(event)}/crm/v3/objects/notes", _headers(event), body)


# --- answers (pure) ---------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def parse_id(body: Any) -> str | None:
    """The ``id`` of the object HubSpot answered with, as text."""
    if isinstance(body, dict):
        found = body.get("id")
        if isinstance(found, int | str) and not isinstance(found, bool) and str(found):
            return str(found)
    return None


def parse_search(body: Any) -> str | None:
    """The id of the first contact a search found."""
    results = body.get("results") if isinstance(body, dict) else None
    return parse_id(results[0]) if isinstance(results, list) and results else None


def existing_id(body: Any) -> str | None:
    """The contact id a ``409`` names ("Contact already exists. Existing ID: N")."""
    message = body.get("message") if isinstance(body, dict) else None
    found = _EXISTING_ID.search(message) if isinstance(message, str) else None
    return found.group(1) if found else None


def failure_of(response: httpx.Response, what: str = "HubSpot") -> SendResult:
    """Classify a HubSpot error answer; ``what`` names the step in the error."""
    code, body = response.status_code, _json(response)
    snippet = response.text[:ERROR_LIMIT]
    if code in (401, 403):
        error = TOKEN_REJECTED if code == 401 else f"{TOKEN_REJECTED} (HTTP 403: missing scopes?)"
        return SendResult(False, False, code, error, response_snippet=snippet)
    if code == 429:
        wait = parse_retry_after(response.headers.get("retry-after")) or RATE_LIMITED_BACKOFF
        error = f"{what}: HTTP 429 rate limit reached"
        return SendResult(False, True, code, error, retry_after=wait, response_snippet=snippet)
    detail = ""
    if isinstance(body, dict):
        parts = [body.get("category"), body.get("message")]
        detail = ": ".join(str(part) for part in parts if isinstance(part, str) and part)
    error = f"{what}: HTTP {code} {detail}".rstrip()[:ERROR_LIMIT]
    retryable = code == 408 or code >= 500
    return SendResult(False, retryable, code, error, response_snippet=snippet)


def written(response: httpx.Response, known_id: str | None = None) -> SendResult:
    """The result of a contact write: its ``id`` (or ``known_id``) as ``ref_id``."""
    if not response.is_success:
        return failure_of(response)
    contact_id = parse_id(_json(response)) or known_id
    code, snippet = response.status_code, response.text[:ERROR_LIMIT]
    if contact_id is None:
        # a success page without the JSON HubSpot documents (a proxy in between?): retry
        error = "HubSpot answered without a contact id"
        return SendResult(False, True, code, error, response_snippet=snippet)
    return SendResult(True, False, code, ref_id=contact_id, response_snippet=snippet)


# --- I/O --------------------------------------------------------------------------


@dataclass
class _Calls:
    """One delivery's requests: each drawn from the token's budgets first."""

    http: httpx.AsyncClient
    redis: Redis | None
    token: str
    sent: int = 0

    async def _over(self, request: Request) -> SendResult | None:
        if self.redis is None:
            return None
        checks = [("hubspot", BUDGET_LIMIT, BUDGET_WINDOW, "10 s")]
        if request.url.endswith("/search"):
            checks.append(("hubspot-search", SEARCH_LIMIT, 1.0, "s"))
        for vendor, limit, window, per in checks:
            key = budget.key(vendor, self.token)
            wait = await budget.take(self.redis, key, limit=limit, window=window)
            if wait is not None:
                over = budget.over_budget("HubSpot", limit, per, wait)
                if self.sent:  # part of this attempt went out: it counts, and is retried
                    error = f"HubSpot request budget ({limit}/{per}) used up part-way; retried"
                    over = replace(over, sent=True, error=error)
                return over
        return None

    async def run(self, request: Request) -> httpx.Response | SendResult:
        over = await self._over(request)
        if over is not None:
            return over
        self.sent += 1
        return await request.send(self.http)


async def _contact(calls: _Calls, event: LeadEvent) -> SendResult:
    """Steps 1-3 of the module docstring: the contact written, its id as ``ref_id``."""
    ref = event.lead.get("refId")
    if ref:
        got = await calls.run(build_update(event, str(ref)))
        if not isinstance(got, SendResult) and got.status_code == 409:
            # the visitor came back with an email another contact has: keep ours
            got = await calls.run(build_update(event, str(ref), with_email=False))
        if isinstance(got, SendResult) or got.status_code != 404:
            return got if isinstance(got, SendResult) else written(got, str(ref))
        # Deleted in HubSpot: find or create the contact afresh, once.
    search = build_search(event)
    if search is not None:
        got = await calls.run(search)
        if isinstance(got, SendResult) or not got.is_success:
            return got if isinstance(got, SendResult) else failure_of(got)
        hit = parse_search(_json(got))
        if hit is not None:
            got = await calls.run(build_update(event, hit))
            return got if isinstance(got, SendResult) else written(got, hit)
    got = await calls.run(build_create(event))
    if isinstance(got, SendResult):
        return got
    existing = existing_id(_json(got)) if got.status_code == 409 else None
    if existing is not None:
        # Created moments ago and not searchable yet: update the one HubSpot named.
        got = await calls.run(build_update(event, existing))
        return got if isinstance(got, SendResult) else written(got, existing)
    return written(got)


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    """Write the contact and its transcript note; ``ref_id`` is HubSpot's contact id.

    ``ctx.redis``: where the per-token budgets live; ``None`` skips them. Transport
    errors propagate until the contact is written, then end as a retryable result
    that keeps its id.
    """
    token = event.options.hubspot_token
    calls = _Calls(ctx.http, ctx.redis, token)
    contact = await _contact(calls, event)
    if not contact.ok or contact.ref_id is None:
        return contact.redacted(token)
    contact_id = contact.ref_id
    try:
        got = await calls.run(build_note(event, contact_id))
    except httpx.TimeoutException:
        return SendResult(False, True, error="HubSpot note: timeout", ref_id=contact_id)
    except httpx.HTTPError as exc:
        error = f"HubSpot note: {type(exc).__name__}: {exc}"
        return SendResult(False, True, error=error, ref_id=contact_id).redacted(token)
    if isinstance(got, SendResult):
        return replace(got, ref_id=contact_id)
    if not got.is_success:
        return replace(failure_of(got, "HubSpot note"), ref_id=contact_id).redacted(token)
    return replace(SendResult.from_response(got), ref_id=contact_id).redacted(token)


FORMAT = Format("hubspot", send, Options, default_url=HUBSPOT_BASE)
