"""Signing in to the admin pages and out of them (``/admin/login``, ``/admin/logout``)."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import Response

from ..agents import AGENT_COOKIE, TOKEN_PREFIX, Agents
from ..errors import StoreError
from .access import (
    count_failure,
    credentials,
    finish,
    network_of,
    own_origin,
    read_form,
    runtime_of,
    set_login_cookie,
    too_many,
)
from .auth import (
    COOKIE,
    CSRF_COOKIE,
    CSRF_FIELD,
    LOGIN_TTL_S,
    Credentials,
    Snapshot,
    csrf_problem,
    throttled,
    token_matches,
)
from .render import UNAVAILABLE, back_to, page, redirect, refuse, render

__all__ = ["login", "logout"]

log = logging.getLogger("chatlead.admin")

CODE_PROBLEM = (
    "That sign-in link is not valid: it was used already, has expired or was mistyped. "
    "Run chatlead admin-url for a new one."
)


async def login(request: Request) -> Response:
    """The way in (no guard): a login code link (GET), the token form and its check (POST).

    The throttle applies: a network with too many failures is refused before
    anything is checked, and a wrong code or token counts as a failure.
    """
    creds = credentials(request)
    try:
        snap = await creds.snapshot(network_of(request))
        if throttled(snap.failures):
            return too_many(request, refuse, snap.retry_after_s)
        if request.method == "GET":
            return await _login_get(request, creds, snap)
        return await _login_post(request, creds, snap)
    except StoreError as exc:
        log.warning("admin_store_unavailable error=%s", exc)
        return render(request, "error.html", 503, title="Unavailable", message=UNAVAILABLE)


async def _login_get(request: Request, creds: Credentials, snap: Snapshot) -> Response:
    code = request.query_params.get("code")
    if code is None:
        return render(request, "login.html", error=None, next="/admin")
    if not await creds.use_code(code):
        return await _login_failed(request, creds, CODE_PROBLEM)
    return _signed_in(request, snap, "/admin")


async def _login_post(request: Request, creds: Credentials, snap: Snapshot) -> Response:
    form = await read_form(request)
    problem = csrf_problem(
        method="POST",
        via="cookie",
        origin=request.headers.get("origin"),
        fetch_site=request.headers.get("sec-fetch-site"),
        own_origin=own_origin(request),
        cookie_token=request.cookies.get(CSRF_COOKIE),
        given_token=form.get(CSRF_FIELD),
    )
    if problem:
        return render(request, "login.html", 403, error=problem, next="/admin")
    given = form.get("token", "").strip()
    if given.startswith(TOKEN_PREFIX):
        return await _agent_signed_in(request, creds, given)
    if not token_matches(given, snap.token):
        return await _login_failed(request, creds, "That token is not right.")
    return _signed_in(request, snap, back_to({"back": form.get("next", "")}, "/admin"))


async def _login_failed(request: Request, creds: Credentials, error: str) -> Response:
    retry = await count_failure(request, creds)
    if retry:
        return too_many(request, refuse, retry)
    return render(request, "login.html", 401, error=error, next="/admin")


async def _agent_signed_in(request: Request, creds: Credentials, token: str) -> Response:
    """An agent's token signs in to the live console only (CONTRACT §10)."""
    agents = Agents(runtime_of(request).store.redis)
    agent = await agents.by_token(token)
    cookie = await agents.cookie_for(agent, int(time.time()), LOGIN_TTL_S) if agent else None
    if cookie is None:
        return await _login_failed(request, creds, "That token is not right.")
    response = redirect("/admin/live")
    response.set_cookie(
        AGENT_COOKIE,
        cookie,
        max_age=LOGIN_TTL_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return finish(request, response)


def _signed_in(request: Request, snap: Snapshot, to: str) -> Response:
    response = redirect(to)
    set_login_cookie(request, response, snap)
    return finish(request, response)


@page
async def logout(request: Request) -> Response:
    """Sign out everywhere: every login cookie issued so far stops working."""
    await credentials(request).sign_out_everywhere()
    response = redirect("/admin/login?notice=logged_out")
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    response.delete_cookie(AGENT_COOKIE, httponly=True, samesite="strict")
    return response
