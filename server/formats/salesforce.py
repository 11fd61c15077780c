"""Format ``salesforce``: create or update a Salesforce Lead (REST API v60.0; CONTRACT §9).

Authentication is the OAuth 2.0 client credentials flow: a form ``POST
{salesforce_login_url}/services/oauth2/token`` (``grant_type=client_credentials``,
``client_id``, ``client_secret``) answers ``{"access_token", "instance_url", ...}``.
The pair is kept per login URL and client (in Redis for every worker, else in this
process) for :data:`TOKEN_TTL` seconds; a 401 (``INVALID_SESSION_ID``) on any data
call gets a new token once and repeats that call once. The ``instance_url`` the
token answer names is where the data calls go, through the same address-checked
client, and it must be ``https`` unless the destination has ``allow_private``.

The record is chosen in this order:

1. the lead already has a Salesforce id (``refId``): ``PATCH sobjects/Lead/{refId}``
   (204); if the lead is gone there (404, deleted or converted) we fall back, once,
   to 2/3;
2. the visitor gave an email: ``GET query?q=SELECT Id FROM Lead WHERE Email = '...'
   AND IsConverted = false LIMIT 1`` (the value escaped by :func:`soql_quote`), and
   ``PATCH`` the open lead it finds;
3. otherwise ``POST sobjects/Lead/`` (201 ``{"id", "success": true}``).

Salesforce requires ``LastName`` and ``Company`` on create, so missing ones become
``Visitor`` and the site's company (else ``[not provided]``). An update sends only
what the visitor gave: no fallback name or company and no ``LeadSource`` over what a
sales person typed or the source the lead came from first. ``Status`` is never sent
(the org's default applies).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import DeliveryError
from . import Context, Format, LeadEvent, SendResult, guard
from .transcript_text import e164, lead_field, readable_transcript

__all__ = [
    "API_VERSION",
    "DESCRIPTION_LIMIT",
    "TOKEN_TTL",
    "Options",
    "lead_body",
    "lookup_soql",
    "result_of",
    "send",
    "soql_quote",
    "split_name",
    "token_key",
    "token_result",
]

API_VERSION = "v60.0"
TOKEN_TTL = 1800
"""Seconds a token is reused; one the org's session timeout ends sooner is replaced on a 401."""
LAST_NAME_FALLBACK = "Visitor"
COMPANY_FALLBACK = "[not provided]"
DESCRIPTION_LIMIT = 32_000
"""``Lead.Description`` is a 32,000-character long text area."""
LENGTHS = {"FirstName": 40, "LastName": 80, "Company": 255, "Email": 80, "Phone": 40}
"""Lengths of the Lead fields we write (Salesforce field reference); longer is 400."""
RATE_LIMITED_BACKOFF = 60.0
"""Least wait after a 429 or ``REQUEST_LIMIT_EXCEEDED`` (Salesforce sends no Retry-After)."""
_GONE = frozenset({"NOT_FOUND", "ENTITY_IS_DELETED", "CANNOT_UPDATE_CONVERTED_LEAD"})
_MEMORY: dict[str, tuple[float, Session]] = {}
"""Tokens of this process when there is no Redis: key -> (monotonic expiry, session)."""


class Options(BaseModel):
    """A ``salesforce`` destination's own keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    salesforce_login_url: str = Field(min_length=1)
    salesforce_client_id: str = Field(min_length=1)
    salesforce_client_secret: str = Field(min_length=1)
    salesforce_lead_source: str = Field(default="Web", min_length=1)

    @field_validator("salesforce_login_url")
    @classmethod
    def _absolute(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("use the org's https:// URL, e.g. https://acme.my.salesforce.com")
        return value.rstrip("/")


@dataclass(frozen=True)
class Session:
    """What a token answer gives: the bearer token and the org's API host."""

    access_token: str
    instance_url: str


# --- pure -------------------------------------------------------------------------

_SOQL_ESCAPES = str.maketrans(
    {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    | {"\b": "\\b", "\f": "\\f"}
)


def soql_quote(value: str) -> str:
    """``value`` as a SOQL string literal: quoted, with ``\\`` and ``'`` (and the other
    characters SOQL's quoted-string escapes name) preceded by a backslash."""
    return "'" + value.translate(_SOQL_ESCAPES) + "'"


def lookup_soql(email: str) -> str:
    """The query for the open lead with this email (SOQL's ``=`` ignores case)."""
    return f"SELECT Id FROM Lead WHERE Email = {soql_quote(email)} AND IsConverted = false LIMIT 1"


def split_name(lead: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(FirstName, LastName)``: the ``first_name``/``last_name`` fields when given, else
    the full name split before its last word (``"Mary Ann Smith"`` -> ``("Mary Ann",
    "Smith")``); a single word is the last name (``"Cher"`` -> ``(None, "Cher")``)."""
    first, last = lead_field(lead, "first_name"), lead_field(lead, "last_name")
    if first or last:
        return first, last
    full = " ".join((lead_field(lead, "name") or "").split())
    head, _, tail = full.rpartition(" ")
    return head or None, tail or None


def lead_body(event: LeadEvent, *, create: bool = True) -> dict[str, Any]:
    """The Lead fields for the event's lead; absent ones are left out.

    ``create``: ``LastName``/``Company`` fall back so Salesforce's required fields are
    never missing, and ``LeadSource`` is set. An update (``create=False``) sends only
    the visitor's own values. Values are cut to the field lengths; an email longer
    than the field is left out (it stays in the transcript).
    """
    lead, options = event.lead, event.options
    first, last = split_name(lead)
    company = lead_field(lead, "company")
    if create:
        last = last or LAST_NAME_FALLBACK
        company = company or event.site.company or COMPANY_FALLBACK
    body: dict[str, Any] = {}
    for name, value in (("FirstName", first), ("LastName", last), ("Company", company)):
        if value:
            body[name] = value[: LENGTHS[name]].rstrip()
    email = lead_field(lead, "email")
    if email and len(email) <= LENGTHS["Email"]:
        body["Email"] = email
    phone = lead_field(lead, "phone")
    if phone:
        body["Phone"] = e164(phone, event.site.phone_region)[: LENGTHS["Phone"]]
    if create:
        body["LeadSource"] = options.salesforce_lead_source
    description = readable_transcript(lead, DESCRIPTION_LIMIT, event.resume_url)
    if description:
        body["Description"] = description
    return body


def token_key(options: Options) -> str:
    """Redis key of the token for this login URL and client (hashed; the secret is in
    the hash so a wrong or rotated secret never rides on another's token)."""
    o = options
    raw = "\n".join((o.salesforce_login_url, o.salesforce_client_id, o.salesforce_client_secret))
    return f"chatlead:crm-token:salesforce:{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def parse_session(body: Any) -> Session | None:
    if not isinstance(body, dict):
        return None
    token, instance = body.get("access_token"), body.get("instance_url")
    if isinstance(token, str) and token and isinstance(instance, str) and instance:
        return Session(token, instance.rstrip("/"))
    return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_of(body: Any) -> tuple[str, str]:
    """``(errorCode, message)`` of Salesforce's error array (``("", "")``: none)."""
    first = body[0] if isinstance(body, list) and body else body
    if not isinstance(first, dict):
        return "", ""
    return str(first.get("errorCode") or ""), str(first.get("message") or "")


def token_result(response: httpx.Response) -> SendResult:
    """Classify a refused token request: 5xx/429 retry, bad credentials are dead."""
    result = SendResult.from_response(response)
    body = _json(response)
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    detail = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    if error in ("invalid_client", "invalid_grant", "unauthorized_client", "invalid_client_id"):
        message = (
            "Salesforce rejected the client credentials; check salesforce_client_id "
            "and salesforce_client_secret"
        )
    else:
        message = f"Salesforce token request refused: HTTP {response.status_code}"
    if error:
        message += f" ({error}: {detail})" if detail else f" ({error})"
    return replace(result, error=message[:300])


def result_of(response: httpx.Response, ref_id: str | None = None) -> SendResult:
    """Classify a data call's answer; ``ref_id``: the id written (201 ``id``, else given).

    5xx and 429 retry; so does 403 ``REQUEST_LIMIT_EXCEEDED``: the org's rolling 24-hour
    API allocation or its cap on concurrent long requests is used up, which clears by
    itself as the window moves on, so the lead waits instead of being dropped.
    """
    result = SendResult.from_response(response, ref_id)
    body = _json(response)
    if result.ok:
        created = body.get("id") if isinstance(body, dict) else None
        return replace(result, ref_id=created if isinstance(created, str) and created else ref_id)
    code, message = error_of(body)
    if code == "REQUEST_LIMIT_EXCEEDED" or response.status_code == 429:
        wait = max(result.retry_after or 0.0, RATE_LIMITED_BACKOFF)
        return replace(
            result, retryable=True, retry_after=wait, error=f"Salesforce: {code or 'HTTP 429'}"
        )
    if code and not result.retryable:
        return replace(result, error=f"Salesforce: {code}: {message}"[:300])
    return result


# --- I/O --------------------------------------------------------------------------


async def _load(ctx: Context, key: str) -> Session | None:
    if ctx.redis is None:
        kept = _MEMORY.get(key)
        return kept[1] if kept and kept[0] > time.monotonic() else None
    raw = await ctx.redis.get(key)
    try:
        return parse_session(json.loads(raw)) if raw else None
    except ValueError:
        return None


async def _keep(ctx: Context, key: str, session: Session) -> None:
    if ctx.redis is None:
        _MEMORY[key] = (time.monotonic() + TOKEN_TTL, session)
        return
    await ctx.redis.set(key, json.dumps(asdict(session)), ex=TOKEN_TTL)


async def _forget(ctx: Context, key: str, session: Session) -> None:
    """Drop the refused token unless another worker already replaced it."""
    if await _load(ctx, key) == session:
        _MEMORY.pop(key, None)
        if ctx.redis is not None:
            await ctx.redis.delete(key)


class _Client:
    """One delivery's calls: the kept token, one new token on a 401."""

    def __init__(self, ctx: Context, event: LeadEvent) -> None:
        self.ctx, self.options = ctx, event.options
        self.allow_private = event.destination.allow_private
        self.key = token_key(self.options)
        self.session: Session | None = None
        self.renewed = False
        self.seen: list[str] = []  # every token used, masked out of the result

    async def _new_token(self) -> SendResult | None:
        url = f"{self.options.salesforce_login_url}/services/oauth2/token"
        o = self.options
        form = {"client_id": o.salesforce_client_id, "client_secret": o.salesforce_client_secret}
        form["grant_type"] = "client_credentials"
        response = await self.ctx.http.post(url, data=form, headers={"Accept": "application/json"})
        if not response.is_success:
            return token_result(response)
        session = parse_session(_json(response))
        if session is None:
            error = "Salesforce token answer has no access_token and instance_url"
            # not the documented JSON (a proxy in between?): retried; the body is not quoted
            return SendResult(False, True, response.status_code, error)
        self.seen.append(session.access_token)
        if (refused := self._refused(session)) is not None:
            return refused
        await _keep(self.ctx, self.key, session)
        self.session = session
        return None

    def _refused(self, session: Session) -> SendResult | None:
        try:
            guard.check_url(session.instance_url, self.allow_private)
        except DeliveryError as exc:
            return SendResult(ok=False, retryable=False, error=f"Salesforce instance_url: {exc}")
        return None

    async def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        assert self.session is not None
        url = f"{self.session.instance_url}/services/data/{API_VERSION}/{path}"
        token = self.session.access_token
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return await self.ctx.http.request(method, url, headers=headers, json=body)

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response | SendResult:
        if self.session is None:
            kept = await _load(self.ctx, self.key)
            if kept is not None:
                self.seen.append(kept.access_token)
                if (refused := self._refused(kept)) is not None:
                    return refused
                self.session = kept
            elif (failed := await self._new_token()) is not None:
                return failed
        response = await self._send(method, path, body)
        if response.status_code != 401:
            return response
        if not self.renewed:
            self.renewed = True
            assert self.session is not None
            await _forget(self.ctx, self.key, self.session)
            if (failed := await self._new_token()) is not None:
                return failed
            response = await self._send(method, path, body)
            if response.status_code != 401:
                return response
        return replace(
            result_of(response),
            error="Salesforce token rejected; check the connected app's API access",
            retryable=False,
        )


def _lead_path(lead_id: str | None = None) -> str:
    return "sobjects/Lead/" + (quote(lead_id, safe="") if lead_id else "")


def _first_id(body: Any) -> str | None:
    records = body.get("records") if isinstance(body, dict) else None
    if isinstance(records, list) and records and isinstance(records[0], dict):
        found = records[0].get("Id")
        return found if isinstance(found, str) and found else None
    return None


async def _upsert(client: _Client, event: LeadEvent) -> SendResult:
    ref = event.lead.get("refId")
    if ref:
        got = await client.call("PATCH", _lead_path(str(ref)), lead_body(event, create=False))
        if isinstance(got, SendResult):
            return got
        if not (got.status_code == 404 or error_of(_json(got))[0] in _GONE):
            return result_of(got, str(ref))
        # Deleted or converted in Salesforce: find an open lead or create one, once.
    email = lead_field(event.lead, "email")
    if email:
        got = await client.call("GET", "query?" + urlencode({"q": lookup_soql(email)}))
        if isinstance(got, SendResult) or not got.is_success:
            return got if isinstance(got, SendResult) else result_of(got)
        found = _first_id(_json(got))
        if found:
            got = await client.call("PATCH", _lead_path(found), lead_body(event, create=False))
            # A failed update keeps the id found, so the retry updates it directly.
            return got if isinstance(got, SendResult) else result_of(got, found)
    body = lead_body(event)
    got = await client.call("POST", _lead_path(), body)
    if not isinstance(got, SendResult) and error_of(_json(got))[0] == "INVALID_EMAIL_ADDRESS":
        # an address Salesforce will not take: the lead without it (the transcript has it)
        got = await client.call(
            "POST", _lead_path(), {k: v for k, v in body.items() if k != "Email"}
        )
    return got if isinstance(got, SendResult) else result_of(got)


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    """Create or update the lead in Salesforce; ``ref_id`` is the Lead's id.

    ``ctx.redis``: where the token is shared by every worker; ``None``: this process.
    The client secret and every token used are masked in the result.
    """
    client = _Client(ctx, event)
    result = await _upsert(client, event)
    return result.redacted(client.options.salesforce_client_secret, *client.seen)


FORMAT = Format("salesforce", send, Options, target="salesforce_login_url")
