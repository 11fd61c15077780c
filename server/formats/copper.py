"""Format ``copper``: create or update a Copper CRM Lead (README, CRMs).

Copper's developer API (https://developer.copper.com) authenticates every call
with ``X-PW-AccessToken``, ``X-PW-Application: developer_api`` and
``X-PW-UserEmail``. The record is chosen in this order:

1. the lead already has a Copper id (``refId``): ``PUT /leads/{refId}``;
   if Copper answers 404 (the record was deleted there) we fall back, once, to 2/3;
2. the visitor gave an email: ``PUT /leads/upsert`` matching on that email, which
   Copper resolves atomically to update-or-create;
3. otherwise ``POST /leads``.

The answer's ``id`` becomes the lead's ``refId``. Copper allows 180 requests per
minute per user on a rolling window and answers 429 with no rate headers beyond
it, so all workers draw from one sliding-window budget in Redis before each call
(:mod:`.budget`), and a 429 is retried no sooner than a minute later.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from . import Context, Format, LeadEvent, Request, SendResult, budget
from .transcript_text import e164, lead_field, readable_transcript

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BUDGET_LIMIT",
    "BUDGET_WINDOW",
    "COPPER_BASE",
    "build_upsert",
    "lead_properties",
    "parse_lead_id",
    "result_of",
    "send",
]

COPPER_BASE = "https://api.copper.com/developer_api/v1"
BUDGET_LIMIT = 180
"""Requests Copper accepts per :data:`BUDGET_WINDOW` seconds and user."""
BUDGET_WINDOW = 60.0
RATE_LIMITED_BACKOFF = 60.0
"""Wait after a 429 that names no ``Retry-After``: Copper's window is one minute."""
TAG = "chat-widget"
ABANDONED_TAG = "abandoned"


class Options(BaseModel):
    """A ``copper`` destination's own keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    copper_api_key: str = Field(min_length=1)
    copper_user_email: str = Field(min_length=1)


def _base(event: LeadEvent) -> str:
    return (event.destination.url or COPPER_BASE).rstrip("/")


def _headers(event: LeadEvent) -> dict[str, str]:
    options: Options = event.options
    return {
        "X-PW-AccessToken": options.copper_api_key,
        "X-PW-Application": "developer_api",
        "X-PW-UserEmail": options.copper_user_email,
        "Content-Type": "application/json",
    }


def fallback_name(lead: dict[str, Any]) -> str:
    """``Website visitor <first 8 of sessionId>`` for a lead that gave no name."""
    short = str(lead.get("sessionId") or "")[:8]
    return f"Website visitor {short}".rstrip()


def lead_properties(event: LeadEvent, *, update: bool = False) -> dict[str, Any]:
    """Copper Lead properties for the event's lead; absent fields are left out.

    With ``update`` (a ``PUT /leads/{id}`` of a record we created, which Copper
    applies field by field) the fallback name and the ``New`` status are not
    sent, so a name or status a sales person set in Copper is kept.
    """
    lead = event.lead
    props: dict[str, Any] = {}
    name = lead_field(lead, "name")
    if name or not update:
        props["name"] = name or fallback_name(lead)
    email = lead_field(lead, "email")
    if email:
        props["email"] = {"email": email, "category": "work"}
    phone = lead_field(lead, "phone")
    if phone:
        number = e164(phone, event.site.phone_region)
        props["phone_numbers"] = [{"number": number, "category": "mobile"}]
    company = lead_field(lead, "company")
    if company:
        props["company_name"] = company
    details = readable_transcript(lead, resume_url=event.resume_url)
    if details:
        props["details"] = details
    # The lead's source is "chat-widget" unless a site runs a form-only flow.
    tag = str(lead.get("source") or TAG)
    props["tags"] = [tag, ABANDONED_TAG] if lead.get("isAbandoned") else [tag]
    if not update:
        props["status"] = "New"
    return props


def build_upsert(event: LeadEvent, *, use_ref: bool = True) -> Request:
    """The one request that writes this lead to Copper (see the module docstring).

    ``use_ref=False`` ignores a known ``refId`` (after Copper said it is gone).
    """
    base, headers, lead = _base(event), _headers(event), event.lead
    ref = lead.get("refId")
    if use_ref and ref:
        props = lead_properties(event, update=True)
        return Request("PUT", f"{base}/leads/{ref}", headers, props)
    props = lead_properties(event)
    email = lead_field(lead, "email")
    if email:
        body = {"properties": props, "match": {"field_name": "email", "field_value": email}}
        return Request("PUT", f"{base}/leads/upsert", headers, body)
    return Request("POST", f"{base}/leads", headers, props)


def parse_lead_id(body: Any) -> str | None:
    """The ``id`` of the Lead Copper answered with, as text."""
    if isinstance(body, dict):
        lead_id = body.get("id")
        if isinstance(lead_id, int | str) and not isinstance(lead_id, bool) and str(lead_id):
            return str(lead_id)
    return None


def result_of(response: httpx.Response) -> SendResult:
    """Classify Copper's answer: the lead id on success, a minute's back-off on 429."""
    result = SendResult.from_response(response)
    if result.ok:
        try:
            body = response.json()
        except ValueError:
            body = None
        return SendResult(
            ok=True,
            retryable=False,
            status_code=result.status_code,
            ref_id=parse_lead_id(body),
            response_snippet=result.response_snippet,
        )
    if response.status_code == 429 and result.retry_after is None:
        return SendResult(
            ok=False,
            retryable=True,
            status_code=429,
            error="HTTP 429: Copper rate limit reached",
            retry_after=RATE_LIMITED_BACKOFF,
            response_snippet=result.response_snippet,
        )
    return result


# --- I/O ------------------------------------------------------------------------


async def _call(
    http: httpx.AsyncClient, request: Request, redis: Redis | None, api_key: str
) -> tuple[SendResult, int | None]:
    if redis is not None:
        wait = await budget.take(
            redis, budget.key("copper", api_key), limit=BUDGET_LIMIT, window=BUDGET_WINDOW
        )
        if wait is not None:
            return budget.over_budget("Copper", BUDGET_LIMIT, "min", wait), None
    response = await request.send(http)
    return result_of(response).redacted(api_key), response.status_code


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    """Create or update the lead in Copper; ``ref_id`` is Copper's lead id.

    ``ctx.redis``: where the per-API-key budget lives; ``None`` skips the budget.
    """
    http, redis = ctx.http, ctx.redis
    api_key = event.options.copper_api_key
    ref = event.lead.get("refId")
    result, status = await _call(http, build_upsert(event), redis, api_key)
    if status == 404 and ref:
        # The record was deleted in Copper: write the lead afresh, once.
        result, _ = await _call(http, build_upsert(event, use_ref=False), redis, api_key)
    elif result.ok and result.ref_id is None and ref:
        result = replace(result, ref_id=str(ref))
    return result


FORMAT = Format("copper", send, Options, default_url=COPPER_BASE)
