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
:class:`Credentials` reads and writes their Redis state; :func:`.access.guard` applies
them to a starlette endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from .. import keys
from ..errors import StoreError
from ..redis_client import REDIS_ERRORS

__all__ = [
    "COOKIE",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "FAILURE_WINDOW_S",
    "LOGIN_CODE_TTL_S",
    "LOGIN_TTL_S",
    "MAX_FAILURES",
    "UNSAFE_METHODS",
    "Credentials",
    "Snapshot",
    "Verdict",
    "Via",
    "csrf_problem",
    "decide",
    "login_cookie",
    "login_url",
    "retry_after_s",
    "throttled",
    "token_matches",
]

COOKIE = "chatlead_admin"
CSRF_COOKIE = "chatlead_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOGIN_TTL_S = 12 * 3600
LOGIN_CODE_TTL_S = 24 * 3600
MAX_FAILURES = 20
FAILURE_WINDOW_S = 60
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

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
    if method not in UNSAFE_METHODS or via == "bearer":
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
