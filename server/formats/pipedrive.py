"""Format ``pipedrive``: a Pipedrive person, their lead and the transcript as a note.

Pipedrive (https://developers.pipedrive.com) authenticates an API-token
integration with the ``x-api-token`` header; the token is never put in a URL,
where proxies and access logs would keep it. One delivery runs in this order:

1. **Person.** With an email: ``GET /api/v2/persons/search?term=<email>
   &fields=email&exact_match=true`` and take the first item's id; with none
   found, or no email at all (no search then), ``POST /api/v2/persons`` with the
   name (or ``Website visitor <session>``), the email and the phone (E.164).
2. **Lead.** A known ``refId``: ``PATCH /api/v1/leads/{refId}``; a 404 there
   (deleted in Pipedrive) falls back, once, to the lookup. Otherwise the
   person's first open lead (``GET /api/v1/leads?person_id=&archived_status=
   not_archived``) is ``PATCH``ed, else ``POST /api/v1/leads`` creates
   ``{"title": "<name> (chat)", "person_id"}``. A PATCH sends only
   ``person_id`` (the visitor may have been matched to a person since): the
   title is set on create only, so a title a sales person gave it is kept.
   The lead's ``id`` (a UUID) becomes the lead's ``refId``.
3. **Note.** ``POST /api/v1/notes`` ``{"content", "lead_id"}`` with the
   readable transcript (Pipedrive reads ``content`` as HTML, so the text is
   escaped and its lines joined with ``<br>``). A failure here still returns
   the lead id as ``ref_id``, so the retry updates that lead instead of
   creating another.

Pipedrive limits an api_token per 2-second window by plan (Essential 20 requests,
up to 120 on Enterprise) and the search API to 10 per 2 seconds on every plan,
on top of a daily token budget. All workers draw from shared budgets in Redis
(:mod:`.budget`): :data:`BUDGET_LIMIT` per 2 s for every call, and
:data:`SEARCH_BUDGET_LIMIT` for searches. A 429 is retried after ``Retry-After``,
else ``x-ratelimit-reset`` (seconds until the window resets), else 2 seconds.
"""

from __future__ import annotations

import html
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field

from . import Context, Format, LeadEvent, Request, SendResult, budget, parse_retry_after
from .copper import fallback_name
from .transcript_text import e164, lead_field, readable_transcript

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BUDGET_LIMIT",
    "BUDGET_WINDOW",
    "PIPEDRIVE_BASE",
    "SEARCH_BUDGET_LIMIT",
    "build_lead_create",
    "build_lead_patch",
    "build_note",
    "build_open_leads",
    "build_person_create",
    "build_person_search",
    "note_content",
    "parse_lead_id",
    "parse_open_lead",
    "parse_person_id",
    "person_body",
    "person_name",
    "result_of",
    "send",
]

PIPEDRIVE_BASE = "https://api.pipedrive.com"
BUDGET_LIMIT = 20
"""Requests per :data:`BUDGET_WINDOW` and token: the Essential plan's limit, the lowest."""
SEARCH_BUDGET_LIMIT = 10
"""Search requests per :data:`BUDGET_WINDOW` and token, on every plan."""
BUDGET_WINDOW = 2.0
RATE_LIMITED_BACKOFF = 2.0
"""Wait after a 429 that names neither ``Retry-After`` nor ``x-ratelimit-reset``."""
ERROR_LIMIT = 300


class Options(BaseModel):
    """A ``pipedrive`` destination's own keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipedrive_token: str = Field(min_length=1)


# --- requests (pure) ----------------------------------------------------------------


def _base(event: LeadEvent) -> str:
    return (event.destination.url or PIPEDRIVE_BASE).rstrip("/")


def _headers(token: str, *, body: bool = False) -> dict[str, str]:
    headers = {"x-api-token": token, "Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def person_name(lead: dict[str, Any]) -> str:
    """The visitor's name, or ``Website visitor <first 8 of sessionId>``."""
    return lead_field(lead, "name") or fallback_name(lead)


def person_body(event: LeadEvent) -> dict[str, Any]:
    """``POST /api/v2/persons``: the name (required), email and phone when given."""
    lead = event.lead
    body: dict[str, Any] = {"name": person_name(lead)}
    email = lead_field(lead, "email")
    if email:
        body["emails"] = [{"value": email, "primary": True, "label": "work"}]
    phone = lead_field(lead, "phone")
    if phone:
        number = e164(phone, event.site.phone_region)
        body["phones"] = [{"value": number, "primary": True, "label": "mobile"}]
    return body


def build_person_search(base: str, token: str, email: str) -> Request:
    query = urlencode({"term": email, "fields": "email", "exact_match": "true"})
    return Request("GET", f"{base}/api/v2/persons/search?{query}", _headers(token))


def build_person_create(base: str, token: str, event: LeadEvent) -> Request:
    return Request("POST", f"{base}/api/v2/persons", _headers(token, body=True), person_body(event))


def build_open_leads(base: str, token: str, person_id: int) -> Request:
    query = urlencode({"person_id": person_id, "archived_status": "not_archived"})
    return Request("GET", f"{base}/api/v1/leads?{query}", _headers(token))


def build_lead_patch(base: str, token: str, lead_id: str, person_id: int) -> Request:
    """Link the lead to the person; nothing else (a sales person may have edited it)."""
    url = f"{base}/api/v1/leads/{quote(lead_id, safe='')}"
    return Request("PATCH", url, _headers(token, body=True), {"person_id": person_id})


def build_lead_create(base: str, token: str, person_id: int, name: str) -> Request:
    body = {"title": f"{name} (chat)", "person_id": person_id}
    return Request("POST", f"{base}/api/v1/leads", _headers(token, body=True), body)


def note_content(lead: dict[str, Any], resume_url: str | None = None) -> str:
    """The readable transcript as note HTML: escaped, one ``<br>`` per line break,
    ending with the resume link of an abandoned lead (§11)."""
    text = readable_transcript(lead, resume_url=resume_url)
    return "<br>".join(html.escape(line, quote=False) for line in text.splitlines())


def build_note(base: str, token: str, lead_id: str, content: str) -> Request:
    body = {"content": content, "lead_id": lead_id}
    return Request("POST", f"{base}/api/v1/notes", _headers(token, body=True), body)


# --- answers (pure) -----------------------------------------------------------------


def _data(body: Any) -> Any:
    return body.get("data") if isinstance(body, dict) else None


def _int_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def parse_person_id(body: Any) -> int | None:
    """The person in a search answer (``data.items[0].item.id``) or a create answer
    (``data.id``)."""
    data = _data(body)
    if not isinstance(data, dict):
        return None
    items = data.get("items")
    if isinstance(items, list):
        for entry in items:
            item = entry.get("item") if isinstance(entry, dict) else None
            if isinstance(item, dict) and (found := _int_id(item.get("id"))) is not None:
                return found
        return None
    return _int_id(data.get("id"))


def parse_lead_id(body: Any) -> str | None:
    """The ``id`` (a UUID) of the lead in ``data``."""
    data = _data(body)
    lead_id = data.get("id") if isinstance(data, dict) else None
    return lead_id if isinstance(lead_id, str) and lead_id else None


def parse_open_lead(body: Any) -> str | None:
    """The first lead's id in a leads list (``data`` is an array, or null when empty)."""
    data = _data(body)
    for lead in data if isinstance(data, list) else ():
        if isinstance(lead, dict) and isinstance(lead.get("id"), str) and lead["id"]:
            return str(lead["id"])
    return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def result_of(response: httpx.Response, ref_id: str | None = None) -> SendResult:
    """Classify one Pipedrive answer by the delivery rules; ``ref_id`` is carried over."""
    code, snippet = response.status_code, response.text[:ERROR_LIMIT]
    if 200 <= code < 300:
        return SendResult(True, False, code, ref_id=ref_id, response_snippet=snippet)
    body = _json(response)
    reason = body.get("error") if isinstance(body, dict) else None
    reason = reason if isinstance(reason, str) else ""
    if code in (401, 403):
        error = "Pipedrive token rejected; check pipedrive_token" + (
            f" (HTTP {code}: {reason})" if code == 403 else ""
        )
        return SendResult(False, False, code, error[:ERROR_LIMIT], None, ref_id, snippet)
    if code == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        if wait is None:
            wait = _seconds(response.headers.get("x-ratelimit-reset"))
        wait = RATE_LIMITED_BACKOFF if wait is None else wait
        error = "HTTP 429: Pipedrive rate limit reached"
        return SendResult(False, True, code, error, wait, ref_id, snippet)
    if code >= 500 or code == 408:
        return SendResult.from_response(response, ref_id)
    error = f"Pipedrive: HTTP {code} {reason}".strip()
    return SendResult(False, False, code, error[:ERROR_LIMIT], None, ref_id, snippet)


def _no_id(response: httpx.Response, what: str, ref_id: str | None) -> SendResult:
    """A success answer without the documented JSON (a proxy in between?): retried."""
    return SendResult(
        ok=False,
        retryable=True,
        status_code=response.status_code,
        error=f"Pipedrive answer has no {what} id",
        ref_id=ref_id,
        response_snippet=response.text[:ERROR_LIMIT],
    )


# --- I/O ------------------------------------------------------------------------------


class _Client:
    """One delivery's calls: each draws from the token's budgets first."""

    def __init__(self, http: httpx.AsyncClient, redis: Redis | None, token: str) -> None:
        self.http, self.redis, self.token = http, redis, token
        self.gone: set[str] = set()  # lead ids Pipedrive answered 404 for

    async def _held(self, vendor_key: str, limit: int) -> SendResult | None:
        if self.redis is None:
            return None
        key = budget.key(vendor_key, self.token)
        wait = await budget.take(self.redis, key, limit=limit, window=BUDGET_WINDOW)
        return None if wait is None else budget.over_budget("Pipedrive", limit, "2 s", wait)

    async def call(self, request: Request, *, search: bool = False) -> httpx.Response | SendResult:
        held = await self._held("pipedrive", BUDGET_LIMIT)
        if held is None and search:
            held = await self._held("pipedrive-search", SEARCH_BUDGET_LIMIT)
        return held if held is not None else await request.send(self.http)

    async def succeeded(
        self, request: Request, *, search: bool = False
    ) -> httpx.Response | SendResult:
        """The answer when Pipedrive took the request, else the result to report."""
        got = await self.call(request, search=search)
        if isinstance(got, SendResult) or got.is_success:
            return got
        return result_of(got)


async def _person(client: _Client, base: str, event: LeadEvent) -> int | SendResult:
    token, email = client.token, lead_field(event.lead, "email")
    if email:
        got = await client.succeeded(build_person_search(base, token, email), search=True)
        if isinstance(got, SendResult):
            return got
        found = parse_person_id(_json(got))
        if found is not None:
            return found
    got = await client.succeeded(build_person_create(base, token, event))
    if isinstance(got, SendResult):
        return got
    created = parse_person_id(_json(got))
    return created if created is not None else _no_id(got, "person", None)


async def _written(client: _Client, request: Request) -> str | SendResult | None:
    """The lead id a PATCH/POST answered with; ``None`` for a 404."""
    got = await client.call(request)
    if isinstance(got, SendResult):
        return got
    if got.status_code == 404 and request.method == "PATCH":
        client.gone.add(request.url.rsplit("/", 1)[1])
        return None
    if not got.is_success:
        return result_of(got)
    return parse_lead_id(_json(got)) or _no_id(got, "lead", None)


async def _lead(client: _Client, base: str, event: LeadEvent, person_id: int) -> str | SendResult:
    token, ref = client.token, event.lead.get("refId")
    if ref:
        done = await _written(client, build_lead_patch(base, token, str(ref), person_id))
        if done is not None:
            return done
        # Deleted in Pipedrive: find or create the lead afresh, once.
    got = await client.succeeded(build_open_leads(base, token, person_id))
    if isinstance(got, SendResult):
        return got
    open_lead = parse_open_lead(_json(got))
    if open_lead is not None:
        done = await _written(client, build_lead_patch(base, token, open_lead, person_id))
        if done is not None:
            return done
    name = person_name(event.lead)
    done = await _written(client, build_lead_create(base, token, person_id, name))
    assert done is not None  # a POST is never read as "gone"
    return done


async def _deliver(client: _Client, event: LeadEvent) -> SendResult:
    base = _base(event)
    person = await _person(client, base, event)
    if isinstance(person, SendResult):
        return person
    lead_id = await _lead(client, base, event, person)
    if isinstance(lead_id, SendResult):
        return lead_id
    content = note_content(event.lead, event.resume_url)
    if not content:
        return SendResult(ok=True, retryable=False, status_code=200, ref_id=lead_id)
    got = await client.call(build_note(base, client.token, lead_id, content))
    if isinstance(got, SendResult):
        return replace(got, ref_id=lead_id)
    return result_of(got, lead_id)


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    """Write the lead to Pipedrive; ``ref_id`` is Pipedrive's lead id.

    ``ctx.redis``: where the per-token budgets live; ``None`` skips them. A failure
    after the lead was written still carries its id; before that, the known
    ``refId`` (so the outbox keeps it) unless Pipedrive said it is gone.
    """
    token: str = event.options.pipedrive_token
    client = _Client(ctx.http, ctx.redis, token)
    result = await _deliver(client, event)
    ref = event.lead.get("refId")
    if result.ref_id is None and ref and quote(str(ref), safe="") not in client.gone:
        result = replace(result, ref_id=str(ref))
    return result.redacted(token)


FORMAT = Format("pipedrive", send, Options, default_url=PIPEDRIVE_BASE)
