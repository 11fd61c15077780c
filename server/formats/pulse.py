"""Format ``pulse``: create or update a Pulse CRM Lead (README, CRMs).

Pulse authenticates with a bearer token from ``POST {base}/auth/login``
(``{"apiKey", "apiSecret"}`` -> ``{"token"`` or ``"accessToken", "expiresIn"?}``).
Tokens are kept in this process per base URL and API key until shortly before
they expire; a 401 on an API call drops the token, logs in again and retries
that call once.

Pulse has no upsert, so the record is chosen by hand:

1. the lead already has a Pulse id (``refId``): ``PATCH /leads/{refId}``; a 404
   there (deleted in Pulse) falls through, once, to 2/3;
2. the visitor gave an email: ``GET /leads?email=`` (a bare array, or an object
   holding a ``data`` or ``leads`` array) and ``PATCH`` the first match;
3. otherwise ``POST /leads``.

The written lead's ``id`` becomes the lead's ``refId``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field

from . import Context, Format, LeadEvent, Request, SendResult
from .transcript_text import e164, lead_field, name_parts, readable_transcript

__all__ = [
    "TOKENS",
    "Token",
    "TokenCache",
    "build_create",
    "build_login",
    "build_lookup",
    "build_patch",
    "lead_body",
    "parse_lead_id",
    "parse_matches",
    "parse_token",
    "send",
]

FIRST_NAME_FALLBACK = "Website"
LAST_NAME_FALLBACK = "Visitor"
EXPIRY_MARGIN = 60.0
"""Seconds before its stated expiry a token is no longer used (at most 10% of its life)."""


# --- tokens ---------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A bearer token; ``expires_at`` on the monotonic clock, ``None``: until refused."""

    value: str
    expires_at: float | None = None

    def valid(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


def parse_token(body: Any, now: float) -> Token | None:
    """The token in a login answer, or ``None`` when it holds none."""
    if not isinstance(body, dict):
        return None
    value = body.get("token") or body.get("accessToken")
    if not isinstance(value, str) or not value:
        return None
    lifetime = body.get("expiresIn", body.get("expires_in"))
    try:
        seconds = float(lifetime) if lifetime is not None else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is None:
        return Token(value)
    margin = min(EXPIRY_MARGIN, max(seconds, 0.0) * 0.1)
    return Token(value, now + seconds - margin)


class TokenCache:
    """Bearer tokens of this process, by ``(base URL, API key)``."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], Token] = {}

    def get(self, key: tuple[str, str], now: float) -> str | None:
        token = self._tokens.get(key)
        if token is None or not token.valid(now):
            return None
        return token.value

    def put(self, key: tuple[str, str], token: Token) -> None:
        self._tokens[key] = token

    def drop(self, key: tuple[str, str], value: str) -> None:
        """Forget ``value`` (refused by Pulse) unless a newer token replaced it."""
        token = self._tokens.get(key)
        if token is not None and token.value == value:
            del self._tokens[key]


TOKENS = TokenCache()
"""The process-wide cache :func:`send` uses by default."""


class Options(BaseModel):
    """A ``pulse`` destination's own keys (``url`` is the Pulse API base)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pulse_api_key: str = Field(min_length=1)
    pulse_api_secret: str = Field(min_length=1)
    pulse_account_id: str | None = None
    pulse_team_id: int | None = None
    pulse_lead_source_id: int | None = None


# --- requests -------------------------------------------------------------------


def _headers(hook: Options) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if hook.pulse_account_id:
        headers["X-Account-Id"] = hook.pulse_account_id
    return headers


def build_login(base: str, hook: Options) -> Request:
    body = {"apiKey": hook.pulse_api_key, "apiSecret": hook.pulse_api_secret}
    return Request("POST", f"{base}/auth/login", _headers(hook), body)


def lead_body(event: LeadEvent, *, create: bool = True) -> dict[str, Any]:
    """The Pulse Lead for the event's lead; absent fields are left out.

    Creating needs both names, so missing ones become ``Website``/``Visitor``.
    An update sends only the names the visitor gave, so a name set in Pulse is
    not overwritten with a placeholder.
    """
    lead, hook = event.lead, event.options
    first, last = name_parts(lead)
    if create:
        first, last = first or FIRST_NAME_FALLBACK, last or LAST_NAME_FALLBACK
    body: dict[str, Any] = {}
    if first:
        body["firstName"] = first
    if last:
        body["lastName"] = last
    email, phone, company = (lead_field(lead, n) for n in ("email", "phone", "company"))
    if email:
        body["email"] = email
    if phone:
        body["phone"] = e164(phone, event.site.phone_region)
    if company:
        body["company"] = company
    body["source"] = lead.get("source") or "chat-widget"
    notes = readable_transcript(lead, resume_url=event.resume_url)
    if notes:
        body["notes"] = notes
    if hook.pulse_team_id is not None:
        body["teamId"] = hook.pulse_team_id
    if hook.pulse_lead_source_id is not None:
        body["leadSourceId"] = hook.pulse_lead_source_id
    return body


def build_lookup(base: str, hook: Options, email: str) -> Request:
    return Request("GET", f"{base}/leads?{urlencode({'email': email})}", _headers(hook))


def build_patch(base: str, hook: Options, lead_id: str, body: dict[str, Any]) -> Request:
    return Request("PATCH", f"{base}/leads/{quote(lead_id, safe='')}", _headers(hook), body)


def build_create(base: str, hook: Options, body: dict[str, Any]) -> Request:
    return Request("POST", f"{base}/leads", _headers(hook), body)


def parse_lead_id(body: Any) -> str | None:
    """The ``id`` of a lead object (also when wrapped as ``{"data": {...}}``), as text."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict) and "id" not in body:
        body = body["data"]
    if isinstance(body, dict):
        lead_id = body.get("id")
        if isinstance(lead_id, int | str) and not isinstance(lead_id, bool) and str(lead_id):
            return str(lead_id)
    return None


def parse_matches(body: Any) -> list[str]:
    """Ids of the leads a lookup found: a bare array, or a ``data``/``leads`` array."""
    if isinstance(body, dict):
        body = body.get("data", body.get("leads"))
    if not isinstance(body, list):
        return []
    return [lead_id for item in body if (lead_id := parse_lead_id(item)) is not None]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def written(response: httpx.Response, known_id: str | None = None) -> SendResult:
    """Classify the answer to a PATCH/POST; ``ref_id`` from its body, else ``known_id``."""
    result = SendResult.from_response(response)
    if not result.ok:
        return result
    return replace(result, ref_id=parse_lead_id(_json(response)) or known_id)


# --- I/O ------------------------------------------------------------------------


class _Client:
    """One delivery's calls to Pulse: bearer token, one re-login on 401."""

    def __init__(self, http: httpx.AsyncClient, base: str, hook: Options, tokens: TokenCache):
        self.http, self.base, self.hook, self.tokens = http, base, hook, tokens
        self.key = (base, hook.pulse_api_key)
        self.token: str | None = None  # checked for expiry once per delivery
        self.relogged = False
        self.seen: list[str] = []  # every token used, masked out of the result

    async def _login(self) -> SendResult | None:
        response = await build_login(self.base, self.hook).send(self.http)
        if not response.is_success:
            failed = SendResult.from_response(response)
            return replace(failed, error=f"Pulse login refused: HTTP {response.status_code}")
        token = parse_token(_json(response), time.monotonic())
        if token is None:
            # Not the documented JSON (a proxy in between?): retried. The body is not
            # quoted: it may hold credentials.
            return SendResult(
                ok=False,
                retryable=True,
                status_code=response.status_code,
                error="Pulse login answer has no token",
            )
        self.tokens.put(self.key, token)
        self.token = token.value
        self.seen.append(token.value)
        return None

    async def _authed(self, request: Request) -> httpx.Response | SendResult:
        if self.token is None:
            self.token = self.tokens.get(self.key, time.monotonic())
            if self.token is not None:
                self.seen.append(self.token)
        if self.token is None and (failed := await self._login()) is not None:
            return failed
        bearer = {**request.headers, "Authorization": f"Bearer {self.token}"}
        return await replace(request, headers=bearer).send(self.http)

    async def call(self, request: Request) -> httpx.Response | SendResult:
        got = await self._authed(request)
        if isinstance(got, httpx.Response) and got.status_code == 401 and not self.relogged:
            self.relogged = True
            if self.token is not None:
                self.tokens.drop(self.key, self.token)
            self.token = None
            if (failed := await self._login()) is not None:
                return failed
            got = await self._authed(request)
        return got


async def _upsert(client: _Client, event: LeadEvent) -> SendResult:
    base, hook, lead = client.base, client.hook, event.lead
    ref = lead.get("refId")
    if ref:
        got = await client.call(build_patch(base, hook, str(ref), lead_body(event, create=False)))
        if isinstance(got, SendResult):
            return got
        if got.status_code != 404:
            return written(got, str(ref))
        # Deleted in Pulse: find or create the lead afresh.
    email = lead_field(lead, "email")
    if email:
        got = await client.call(build_lookup(base, hook, email))
        if isinstance(got, SendResult) or not got.is_success:
            return got if isinstance(got, SendResult) else SendResult.from_response(got)
        matches = parse_matches(_json(got))
        if matches:
            body = lead_body(event, create=False)
            got = await client.call(build_patch(base, hook, matches[0], body))
            return got if isinstance(got, SendResult) else written(got, matches[0])
    got = await client.call(build_create(base, hook, lead_body(event)))
    return got if isinstance(got, SendResult) else written(got)


async def send(ctx: Context, event: LeadEvent, *, tokens: TokenCache = TOKENS) -> SendResult:
    """Create or update the lead in Pulse; ``ref_id`` is Pulse's lead id (Pulse states
    no rate budget, so ``ctx.redis`` is not used)."""
    hook: Options = event.options
    url = event.destination.url
    assert url, "the pulse format requires url"
    client = _Client(ctx.http, url.rstrip("/"), hook, tokens)
    result = await _upsert(client, event)
    return result.redacted(hook.pulse_api_key, hook.pulse_api_secret, *client.seen)


FORMAT = Format("pulse", send, Options, requires=("url",))
