"""Who may use the admin surface (``/api/*``, ``/admin*``), and CSRF protection.

With ``CHATLEAD_ADMIN_TOKEN`` set, a request needs ``Authorization: Bearer
<token>`` or, for the admin pages, the login cookie the token form sets. Without
a token the admin surface answers only to loopback clients that address the
server by a loopback name (so a DNS-rebinding page cannot reach it either).

Requests that change something and are not authenticated by a Bearer header
(cookie or loopback browsers) must come from our own origin and carry the
double-submit CSRF token (form field ``csrf`` or header ``X-CSRF-Token``, equal
to the ``chatlead_csrf`` cookie). Tokens are compared in constant time; the
login cookie holds an expiring HMAC derived from the token, never the token.

Admin pages send ``Referrer-Policy: same-origin``, so a browser names our origin
on their form posts. A browser that still sends ``Origin: null`` (a stricter
policy of its own, a privacy extension) is accepted only when it also says
``Sec-Fetch-Site: same-origin`` -- a header no page script can set -- and the
CSRF token matches.

The decisions (:func:`decide`, :func:`csrf_problem`) are pure; :func:`guard`
applies them to a starlette endpoint.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "COOKIE",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "Verdict",
    "csrf_problem",
    "csrf_token",
    "decide",
    "finish",
    "guard",
    "is_loopback_host",
    "login_cookie",
    "own_origin",
    "read_form",
    "set_login_cookie",
]

COOKIE = "chatlead_admin"
CSRF_COOKIE = "chatlead_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOGIN_TTL_S = 12 * 3600
MAX_FORM_BYTES = 16_384
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Via = Literal["bearer", "cookie", "loopback"]


@dataclass(frozen=True)
class Verdict:
    """``status`` 200 lets the request through; 401 and 403 say why not."""

    status: int
    reason: str = ""
    via: Via | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def login_cookie(token: str, now_s: int) -> str:
    """The login cookie value: an expiry and its HMAC under the admin token."""
    expiry = now_s + LOGIN_TTL_S
    return f"{expiry}.{_mac(token, f'chatlead-login:{expiry}')}"


def _cookie_valid(token: str, value: str, now_s: int) -> bool:
    expiry, _, mac = value.partition(".")
    if not expiry.isdigit() or int(expiry) < now_s:
        return False
    return hmac.compare_digest(mac.encode(), _mac(token, f"chatlead-login:{expiry}").encode())


def is_loopback_host(host: str | None) -> bool:
    """True for ``127.0.0.0/8``, ``::1`` and ``localhost`` (with or without a port)."""
    if not host:
        return False
    name = host.strip()
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":")[0]
    if name.lower() == "localhost" or name.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def decide(
    token: str | None,
    *,
    client_host: str | None,
    host_header: str | None,
    authorization: str | None,
    cookie: str | None,
    now_s: int,
) -> Verdict:
    """May this request use the admin surface?"""
    if not token:
        if not is_loopback_host(client_host):
            return Verdict(
                403, "the admin surface answers only on this machine unless an admin token is set"
            )
        if not is_loopback_host(host_header):
            return Verdict(403, "address the server as localhost or 127.0.0.1")
        return Verdict(200, via="loopback")
    if authorization is not None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return Verdict(200, via="bearer")
        return Verdict(401, "wrong admin token")
    if cookie and _cookie_valid(token, cookie, now_s):
        return Verdict(200, via="cookie")
    return Verdict(401, "an admin token is required")


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
    has_cookies: bool,
    cookie_token: str | None,
    given_token: str | None,
) -> str | None:
    """Why an unsafe browser request must be refused (None: accept it)."""
    if method not in _UNSAFE or via == "bearer":
        return None
    browser = origin is not None or fetch_site is not None or has_cookies
    if via == "loopback" and not browser:
        return None  # curl or the CLI on this machine: no ambient credentials involved
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


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        login_cookie(token, int(time.time())),
        max_age=LOGIN_TTL_S,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (first value per name), size-capped.

    The body is read at most once per request (the CSRF check and the endpoint share
    it) and stops at ``MAX_FORM_BYTES`` while streaming, so a chunked body without a
    ``Content-Length`` cannot make us buffer more; a larger body reads as no form.
    """
    cached: dict[str, str] | None = request.scope.get("chatlead.form")
    if cached is None:
        cached = request.scope["chatlead.form"] = await _read_form(request)
    return cached


async def _read_form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        return {}
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items()}


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


Endpoint = Callable[[Request], Awaitable[Response]]
Refusal = Callable[[Request, int, str], Response]


def guard(refuse: Refusal) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint with :func:`decide` and :func:`csrf_problem`.

    ``refuse(request, status, reason)`` builds the answer for a refused request
    (JSON for the API, a page for the admin). The verdict is left in
    ``request.state.auth_via``.
    """

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            token = request.app.state.runtime.settings.admin_token
            verdict = decide(
                token,
                client_host=request.client.host if request.client else None,
                host_header=request.headers.get("host"),
                authorization=request.headers.get("authorization"),
                cookie=request.cookies.get(COOKIE),
                now_s=int(time.time()),
            )
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
        has_cookies="cookie" in headers,
        cookie_token=request.cookies.get(CSRF_COOKIE),
        given_token=given,
    )
