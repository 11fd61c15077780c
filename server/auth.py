"""Who may use the admin surface (``/api/*``, ``/admin*``, a guarded ``/metrics``).

A request needs ``Authorization: Bearer <admin token>`` or, for the admin pages, the
login cookie. The admin token is ``CHATLEAD_ADMIN_TOKEN``; without it the server
makes one at first start and keeps it in Redis (every process shares it). That
token is never shown: a person signs in with a single-use login code, valid 24 h,
in a link (``/admin/login?code=…``) that ``chatlead serve`` prints at start and
``chatlead admin-url`` mints (README, "Operator API and reports"). Nothing answers
without a credential, from any address.

The login cookie holds an expiry and an HMAC under the token of that expiry and
the sign-out generation, a counter in Redis: signing out bumps it, so every cookie
issued before (a copy replayed later included) is refused by every process.

More than ``MAX_FAILURES`` wrong credentials (a wrong Bearer token, a wrong token in
the sign-in form, a wrong login code) from one client network within
``FAILURE_WINDOW_S`` of the first make every admin request from that network answer
429 with ``Retry-After`` until the window passes. The count lives in Redis, so it
holds across processes; one warning per network and window says so, without the
attempted credential (and the network only with ``CHATLEAD_LOG_CLIENT_IP``).

Requests that change something and are not authenticated by a Bearer header
(cookie browsers) must come from our own origin and carry the double-submit CSRF
token (form field ``csrf`` or header ``X-CSRF-Token``, equal to the
``chatlead_csrf`` cookie). Secrets are compared in constant time.

Admin pages send ``Referrer-Policy: same-origin``, so a browser names our origin
on their form posts. A browser that still sends ``Origin: null`` (a stricter
policy of its own, a privacy extension) is accepted only when it also says
``Sec-Fetch-Site: same-origin`` -- a header no page script can set -- and the
CSRF token matches.

The decisions (:func:`decide`, :func:`csrf_problem`, :func:`throttled`) are pure;
:class:`Credentials` reads and writes their Redis state; :func:`guard` applies them
to a starlette endpoint.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from . import keys, logs
from .errors import StoreError
from .limits import client_network
from .redis_client import REDIS_ERRORS

__all__ = [
    "COOKIE",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "FAILURE_WINDOW_S",
    "LOGIN_CODE_TTL_S",
    "MAX_FAILURES",
    "Credentials",
    "Snapshot",
    "Verdict",
    "count_failure",
    "credentials",
    "csrf_problem",
    "csrf_token",
    "decide",
    "finish",
    "guard",
    "login_cookie",
    "login_url",
    "network_of",
    "own_origin",
    "read_form",
    "retry_after_s",
    "set_login_cookie",
    "throttled",
    "token_matches",
    "too_many",
]

log = logging.getLogger("chatlead.auth")

COOKIE = "chatlead_admin"
CSRF_COOKIE = "chatlead_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOGIN_TTL_S = 12 * 3600
LOGIN_CODE_TTL_S = 24 * 3600
MAX_FAILURES = 20
FAILURE_WINDOW_S = 60
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Via = Literal["bearer", "cookie"]


@dataclass(frozen=True)
class Verdict:
    """``status`` 200 lets the request through; 401 says why not.

    ``failed`` is True when a credential was given and is wrong (it counts towards
    the throttle); a missing or lapsed one is not an attempt at guessing.
    """

    status: int
    reason: str = ""
    via: Via | None = None
    failed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def _cookie_message(generation: int, expiry: int) -> str:
    return f"chatlead-login:{generation}:{expiry}"


def login_cookie(token: str, generation: int, now_s: int) -> str:
    """The login cookie value: an expiry and its HMAC (with the sign-out generation)."""
    expiry = now_s + LOGIN_TTL_S
    return f"{expiry}.{_mac(token, _cookie_message(generation, expiry))}"


def _cookie_valid(token: str, generation: int, value: str, now_s: int) -> bool:
    expiry, _, mac = value.partition(".")
    if not expiry.isdigit() or int(expiry) < now_s:
        return False
    expected = _mac(token, _cookie_message(generation, int(expiry)))
    return hmac.compare_digest(mac.encode(), expected.encode())


def token_matches(given: str, token: str) -> bool:
    """``given`` is the admin token (constant time)."""
    return hmac.compare_digest(given.encode(), token.encode())


def decide(
    token: str,
    *,
    authorization: str | None,
    cookie: str | None,
    generation: int,
    now_s: int,
) -> Verdict:
    """May this request use the admin surface?"""
    if authorization is not None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and token_matches(given.strip(), token):
            return Verdict(200, via="bearer")
        return Verdict(401, "wrong admin token", failed=True)
    if cookie and _cookie_valid(token, generation, cookie, now_s):
        return Verdict(200, via="cookie")
    return Verdict(401, "an admin token is required")


def throttled(failures: int) -> bool:
    """Whether a client network with ``failures`` in its window is refused."""
    return failures > MAX_FAILURES


def retry_after_s(pttl_ms: int) -> int:
    """``Retry-After`` seconds for a window with ``pttl_ms`` left (at least 1)."""
    return max(1, math.ceil(pttl_ms / 1000))


def login_url(base: str, code: str) -> str:
    return f"{base.rstrip('/')}/admin/login?code={code}"


def _code_key(code: str) -> str:
    # only a digest is stored: a copy of the database holds no usable code
    return keys.login_code(hashlib.sha256(code.encode()).hexdigest())


# --- the state in Redis ---------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What one admin request is judged against, read in one round trip."""

    token: str
    generation: int
    failures: int
    retry_after_s: int


class Credentials:
    """The admin token, login codes, the sign-out generation and failure counts in Redis.

    ``configured`` is ``CHATLEAD_ADMIN_TOKEN``; None means the generated token.
    Every method raises :class:`StoreError` when Redis cannot answer.
    """

    def __init__(self, redis: Any, configured: str | None) -> None:
        self.redis = redis
        self.configured = configured

    async def snapshot(self, network: str) -> Snapshot:
        failures_key = keys.auth_failures(network)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(failures_key)
                pipe.pttl(failures_key)
                pipe.get(keys.ADMIN_GENERATION)
                if self.configured is None:
                    pipe.set(keys.ADMIN_TOKEN, secrets.token_urlsafe(32), nx=True, get=True)
                    pipe.get(keys.ADMIN_TOKEN)
                replies = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreError(f"Redis error reading admin credentials: {exc}") from exc
        failures, pttl, generation = replies[:3]
        return Snapshot(
            token=self.configured or str(replies[4]),
            generation=int(generation or 0),
            failures=int(failures or 0),
            retry_after_s=retry_after_s(int(pttl)) if failures else 0,
        )

    async def token(self) -> str:
        """The admin token: the configured one, or the generated one (made if missing)."""
        if self.configured is not None:
            return self.configured
        return (await self.snapshot("-")).token

    async def fail(self, network: str) -> tuple[int, int]:
        """Count a failed attempt; returns the window's count and seconds left in it."""
        key = keys.auth_failures(network)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, FAILURE_WINDOW_S, nx=True)
                pipe.pttl(key)
                count, _, pttl = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise StoreError(f"Redis error counting a failed sign-in: {exc}") from exc
        return int(count), retry_after_s(int(pttl))

    async def new_code(self) -> str:
        """A fresh single-use login code, valid ``LOGIN_CODE_TTL_S``."""
        await self.token()  # the code signs in with this token: make sure there is one
        code = secrets.token_urlsafe(24)
        try:
            await self.redis.set(_code_key(code), "1", ex=LOGIN_CODE_TTL_S)
        except REDIS_ERRORS as exc:
            raise StoreError(f"Redis error storing a login code: {exc}") from exc
        return code

    async def use_code(self, code: str) -> bool:
        """Consume a login code (atomically: a code signs in once); False if not valid."""
        if not code or len(code) > 100:
            return False
        try:
            return await self.redis.getdel(_code_key(code)) is not None
        except REDIS_ERRORS as exc:
            raise StoreError(f"Redis error reading a login code: {exc}") from exc

    async def sign_out_everywhere(self) -> None:
        """Bump the generation: every login cookie issued so far stops working."""
        try:
            await self.redis.incr(keys.ADMIN_GENERATION)
        except REDIS_ERRORS as exc:
            raise StoreError(f"Redis error signing out: {exc}") from exc


def credentials(request: Request) -> Credentials:
    runtime = request.app.state.runtime
    return Credentials(runtime.store.redis, runtime.settings.admin_token)


def network_of(request: Request) -> str:
    """The client network failures count against (an IPv4 address or an IPv6 /64)."""
    return client_network(request.client.host if request.client else "-")


async def count_failure(request: Request, creds: Credentials) -> int | None:
    """Record a failed attempt; the ``Retry-After`` seconds when it throttles the network."""
    count, retry = await creds.fail(network_of(request))
    if not throttled(count):
        return None
    if count == MAX_FAILURES + 1:  # exactly one process sees the crossing
        shown = logs.client_network(
            request.client.host if request.client else "",
            request.app.state.runtime.settings.log_client_ip,
        )
        log.warning(
            "admin_auth_throttled failures=%d window_s=%d%s",
            count,
            FAILURE_WINDOW_S,
            f" client={shown}" if shown else "",
        )
    return retry


# --- CSRF ---------------------------------------------------------------------


def _same_origin(origin: str, fetch_site: str | None, own_origin: str) -> bool:
    """``Origin`` names us, or is ``null`` from a browser that vouches for same-origin.

    Browsers send ``Origin: null`` on a form post when the referrer policy hides the
    origin (Fetch standard, "serializing a request origin"); ``Sec-Fetch-Site`` is
    still sent and cannot be forged by the page.
    """
    if origin == "null":
        return fetch_site == "same-origin"
    return origin.rstrip("/") == own_origin


def csrf_problem(
    *,
    method: str,
    via: Via,
    origin: str | None,
    fetch_site: str | None,
    own_origin: str,
    cookie_token: str | None,
    given_token: str | None,
) -> str | None:
    """Why an unsafe cookie-authenticated request must be refused (None: accept it)."""
    if method not in _UNSAFE or via == "bearer":
        return None
    if origin is not None and not _same_origin(origin, fetch_site, own_origin):
        return "cross-origin request refused"
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return "cross-site request refused"
    if not cookie_token or not given_token:
        return "missing CSRF token; reload the page and try again"
    if not hmac.compare_digest(cookie_token.encode(), given_token.encode()):
        return "CSRF token mismatch; reload the page and try again"
    return None


def csrf_token(request: Request) -> str:
    """The CSRF token for forms on this page (the cookie's, or a new one)."""
    existing = request.cookies.get(CSRF_COOKIE)
    token = request.scope.setdefault("chatlead.csrf", existing or secrets.token_urlsafe(24))
    return str(token)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def finish(request: Request, response: Response) -> Response:
    """Add the CSRF cookie a page handed out and the admin's security headers."""
    issued = request.scope.get("chatlead.csrf")
    if issued and issued != request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, issued, httponly=True, samesite="strict", secure=_secure(request)
        )
    response.headers.setdefault("cache-control", "no-store")
    response.headers.setdefault("referrer-policy", "same-origin")
    response.headers.setdefault("x-content-type-options", "nosniff")
    response.headers.setdefault("x-frame-options", "DENY")
    return response


def set_login_cookie(request: Request, response: Response, snapshot: Snapshot) -> None:
    response.set_cookie(
        COOKIE,
        login_cookie(snapshot.token, snapshot.generation, int(time.time())),
        max_age=LOGIN_TTL_S,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (first value per name).

    The body is read at most once per request (the CSRF check and the endpoint share
    it); its size is capped before it reaches us (:mod:`chatlead.app`, 16 KiB).
    """
    cached: dict[str, str] | None = request.scope.get("chatlead.form")
    if cached is None:
        cached = request.scope["chatlead.form"] = await _read_form(request)
    return cached


async def _read_form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items()}


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


Endpoint = Callable[[Request], Awaitable[Response]]
Refusal = Callable[[Request, int, str], Response]


def too_many(request: Request, refuse: Refusal, retry_s: int) -> Response:
    """The 429 answer of a throttled network."""
    response = refuse(request, 429, f"too many failed sign-ins; try again in {retry_s} s")
    response.headers["retry-after"] = str(retry_s)
    return response


def guard(refuse: Refusal) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint with the throttle, :func:`decide` and :func:`csrf_problem`.

    ``refuse(request, status, reason)`` builds the answer for a refused request
    (JSON for the API, a page for the admin): 401, 403, 429 or 503 (Redis cannot
    say who may pass). The verdict is left in ``request.state.auth_via``.
    """

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            creds = credentials(request)
            try:
                snap = await creds.snapshot(network_of(request))
                if throttled(snap.failures):
                    return too_many(request, refuse, snap.retry_after_s)
                verdict = decide(
                    snap.token,
                    authorization=request.headers.get("authorization"),
                    cookie=request.cookies.get(COOKIE),
                    generation=snap.generation,
                    now_s=int(time.time()),
                )
                if verdict.failed and (retry := await count_failure(request, creds)):
                    return too_many(request, refuse, retry)
            except StoreError as exc:
                log.warning("admin_auth_store_unavailable error=%s", type(exc.__cause__).__name__)
                return refuse(request, 503, "Redis is unavailable; try again shortly.")
            if not verdict.ok:
                return refuse(request, verdict.status, verdict.reason)
            assert verdict.via is not None
            problem = await _csrf(request, verdict.via)
            if problem:
                return refuse(request, 403, problem)
            request.state.auth_via = verdict.via
            return await endpoint(request)

        return guarded

    return wrap


async def _csrf(request: Request, via: Via) -> str | None:
    if request.method not in _UNSAFE or via == "bearer":
        return None
    given = request.headers.get(CSRF_HEADER) or (await read_form(request)).get(CSRF_FIELD)
    headers: Mapping[str, str] = request.headers
    return csrf_problem(
        method=request.method,
        via=via,
        origin=headers.get("origin"),
        fetch_site=headers.get("sec-fetch-site"),
        own_origin=own_origin(request),
        cookie_token=request.cookies.get(CSRF_COOKIE),
        given_token=given,
    )
