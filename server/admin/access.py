"""The admin's rules applied to starlette requests (:mod:`.auth` decides).

:func:`guard` wraps an endpoint with the throttle, the credential check and the
CSRF check; :func:`finish` adds the CSRF cookie a page handed out and the admin's
security headers; :func:`read_form` reads a form body once per request.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from .. import logs
from ..errors import StoreError
from ..limits import client_network
from ..runtime import Runtime
from .auth import (
    COOKIE,
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    FAILURE_WINDOW_S,
    LOGIN_TTL_S,
    MAX_FAILURES,
    UNSAFE_METHODS,
    Credentials,
    Snapshot,
    Via,
    csrf_problem,
    decide,
    login_cookie,
    throttled,
)

__all__ = [
    "Endpoint",
    "Refusal",
    "count_failure",
    "credentials",
    "csrf_token",
    "finish",
    "guard",
    "network_of",
    "own_origin",
    "read_form",
    "runtime_of",
    "set_login_cookie",
    "too_many",
]

log = logging.getLogger("chatlead.auth")


def runtime_of(request: Request) -> Runtime:
    """What the serving process shares (sites, store, settings)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def credentials(request: Request) -> Credentials:
    runtime = runtime_of(request)
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
            runtime_of(request).settings.log_client_ip,
        )
        log.warning(
            "admin_auth_throttled failures=%d window_s=%d%s",
            count,
            FAILURE_WINDOW_S,
            f" client={shown}" if shown else "",
        )
    return retry


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
    say who may pass).
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
            return await endpoint(request)

        return guarded

    return wrap


async def _csrf(request: Request, via: Via) -> str | None:
    if request.method not in UNSAFE_METHODS or via == "bearer":
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
