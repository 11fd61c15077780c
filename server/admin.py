"""The admin pages (``/admin*``): server-rendered HTML, no CDN, working without script.

Dashboard (totals per site, drop-off and per-day charts, abandoned leads with a
CSV link, test-event buttons), the inbox (what each lead needs, new/handled,
search, test events apart), the session list, one page per session (transcript,
fields, deliveries, erase) and the delivery log (with replay). Every number and
row comes from :class:`server.api.Reader`, so pages and API always agree. Text
from visitors is escaped by Jinja2's autoescaping; forms are plain POSTs carrying
the CSRF token (see :mod:`server.auth`). The look lives in :mod:`server.admin_ui`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import admin_ui, auth, charts, reports
from .api import SESSION_ID, Reader, replay, send_test_event, session_status
from .erase import erase_session
from .errors import StoreError
from .inbox import parse_inbox_query
from .reports import QueryError
from .runtime import Runtime

__all__ = ["routes"]

log = logging.getLogger("chatlead.admin")

PAGE_ROWS = 25
PERIODS: tuple[tuple[str, str], ...] = (
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("365d", "Last 365 days"),
)
NOTICES = {
    "replayed": "The event was queued for delivery again.",
    "pending": "That event is already waiting for delivery.",
    "missing": "That event no longer exists.",
    "test_sent": "A test event was queued; it appears below once delivered.",
    "erased": "The session's personal data was erased.",
    "logged_out": "You are signed out.",
    "handled": "Marked handled.",
    "reopened": "Marked new again.",
}
SECTIONS = ("/admin/inbox", "/admin/sessions", "/admin/deliveries")
"""Admin paths whose subpages light up their nav entry (the dashboard is ``/admin``)."""
SCRIPT_ETAG = '"' + hashlib.sha256(admin_ui.SCRIPT.encode()).hexdigest()[:16] + '"'


def section(path: str) -> str:
    """The nav entry a path belongs to."""
    return next((s for s in SECTIONS if path == s or path.startswith(s + "/")), "/admin")


def _target(runtime: Runtime, site_id: str) -> str:
    """Where a site's leads go, without credentials, paths or query strings."""
    hook = runtime.sites[site_id].webhook
    if hook.url is None:
        return "built-in inbox" if hook.format == "external-lead" else hook.format
    host = urlsplit(hook.url).hostname or "?"
    return f"{hook.format} → {host}"


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    runtime = _runtime(request)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    html = _env.get_template(name).render(
        csrf_input=Markup('<input type="hidden" name="{}" value="{}">').format(
            auth.CSRF_FIELD, auth.csrf_token(request)
        ),
        signed_in=request.cookies.get(auth.COOKIE) is not None,
        token_mode=bool(runtime.settings.admin_token),
        notice=notice,
        path=request.url.path,
        section=section(request.url.path),
        bare=name == "login.html",
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["content-security-policy"] = admin_ui.CSP
    return auth.finish(request, response)


TITLES = {429: "Too many attempts", 503: "Unavailable"}
UNAVAILABLE = "Redis is unavailable; try again shortly."


def _refuse(request: Request, status: int, reason: str) -> Response:
    if status == 401:
        return _render(request, "login.html", 401, error=None, next=request.url.path)
    title = TITLES.get(status, "Not allowed")
    return _render(request, "error.html", status, title=title, message=reason)


def page(fn: auth.Endpoint) -> auth.Endpoint:
    """Admin-only; bad queries as a 400 page, Redis outages as a 503 page."""
    guarded = auth.guard(_refuse)(fn)

    async def run(request: Request) -> Response:
        try:
            return await guarded(request)
        except QueryError as exc:
            status = 404 if exc.param == "site" else 400
            return _render(request, "error.html", status, title="Bad request", message=str(exc))
        except StoreError as exc:
            log.warning("admin_store_unavailable error=%s", exc)
            return _render(request, "error.html", 503, title="Unavailable", message=UNAVAILABLE)

    run.__name__ = fn.__name__
    return run


def _back(form: dict[str, str], default: str) -> str:
    """A same-site admin path to return to (never an open redirect)."""
    back = form.get("back", "")
    if back.startswith("/admin") and not back.startswith("//") and "\\" not in back:
        return back
    return default


def _with_notice(url: str, notice: str) -> str:
    path, _, query = url.partition("?")
    params = {k: v for k, v in parse_qsl(query) if k != "notice"}
    return f"{path}?{urlencode({**params, 'notice': notice})}"


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


# --- pages ------------------------------------------------------------------


@page
async def dashboard(request: Request) -> Response:
    runtime = _runtime(request)
    reader = Reader(runtime)
    query = request.query_params
    site_id = query.get("site") or None
    since = query.get("since") or "30d"
    period = reports.parse_period(since, query.get("until"), await reader.now_ms())
    report = await reader.report(site_id, period, query.get("cursor"), PAGE_ROWS)
    everywhere = list(runtime.sites.values())
    overall = report.summary if site_id is None else await reader.summary(everywhere, period)
    filters = {k: v for k, v in (("site", site_id), ("since", since)) if v}
    csv_query = urlencode({**filters, "format": "csv", **dict(_until(query))})
    older = (
        "/admin?" + urlencode({**filters, **dict(_until(query)), "cursor": report.next_cursor})
        if report.next_cursor
        else None
    )
    return _render(
        request,
        "dashboard.html",
        report=report,
        overall=overall,
        site_id=site_id,
        since=since,
        periods=_periods(since),
        sites=list(runtime.sites),
        targets={sid: _target(runtime, sid) for sid in runtime.sites},
        drop_off_svg=charts.drop_off_chart(report.summary.drop_off),
        daily_svg=charts.daily_chart(report.summary.daily),
        csv_url="/api/reports/abandoned?" + csv_query,
        older_url=older,
        first_page=not query.get("cursor"),
        show_site=site_id is None and len(runtime.sites) > 1,
    )


def _until(query: Any) -> list[tuple[str, str]]:
    return [("until", query["until"])] if query.get("until") else []


@page
async def session_page(request: Request) -> Response:
    detail = await Reader(_runtime(request)).session(request.path_params["session_id"])
    if detail is None:
        message = "No such session: it may have expired or been erased."
        return _render(request, "error.html", 404, title="Not found", message=message)
    return _render(request, "session.html", s=detail)


@page
async def deliveries_page(request: Request) -> Response:
    query = request.query_params
    status = query.get("status") or None
    if status not in (None, "pending", "delivered", "dead"):
        raise QueryError("status", "must be pending, delivered or dead")
    items, cursor = await Reader(_runtime(request)).deliveries(status, query.get("cursor"), 50)
    filters = {"status": status} if status else {}
    older = "/admin/deliveries?" + urlencode({**filters, "cursor": cursor}) if cursor else None
    return _render(request, "deliveries.html", items=items, shown=status, older_url=older)


def _paged(path: str, params: dict[str, str | None]) -> Callable[..., str]:
    """``url(**changes)``: the address of ``path`` with ``params`` and some changed."""

    def url(**changes: str | None) -> str:
        merged = {k: v for k, v in {**params, **changes}.items() if v}
        return path + ("?" + urlencode(merged) if merged else "")

    return url


def _periods(since: str) -> tuple[tuple[str, str], ...]:
    return PERIODS if since in dict(PERIODS) else (*PERIODS, (since, since))


@page
async def sessions_page(request: Request) -> Response:
    runtime = _runtime(request)
    reader = Reader(runtime)
    query = request.query_params
    status = session_status(query.get("status"))
    site_id = query.get("site") or None
    since = query.get("since") or "7d"
    period = reports.parse_period(since, query.get("until"), await reader.now_ms())
    found = await reader.sessions(site_id, period, status, query.get("cursor"), PAGE_ROWS)
    params = {"status": status, "site": site_id, "since": since, "until": query.get("until")}
    url = _paged("/admin/sessions", params)
    return _render(
        request,
        "sessions.html",
        items=found.items,
        shown=status,
        site_id=site_id,
        since=since,
        periods=_periods(since),
        period_label=dict(_periods(since))[since],
        sites=list(runtime.sites),
        show_site=site_id is None and len(runtime.sites) > 1,
        tab_url=lambda value: url(status=value),
        older_url=url(cursor=found.next_cursor) if found.next_cursor else None,
    )


@page
async def inbox_page(request: Request) -> Response:
    runtime = _runtime(request)
    query = request.query_params
    wanted = parse_inbox_query(query.get("status"), query.get("kind"), query.get("q"))
    found = await Reader(runtime).inbox(wanted, query.get("cursor"), PAGE_ROWS)
    params = {
        "status": wanted.status,
        "kind": None if wanted.kind == "leads" else wanted.kind,
        "q": wanted.search,
    }
    url = _paged("/admin/inbox", params)
    return _render(
        request,
        "inbox.html",
        items=found.items,
        query=wanted,
        back=url(cursor=query.get("cursor")),
        show_site=len(runtime.sites) > 1,
        tab_url=_paged("/admin/inbox", {"q": wanted.search}),  # tabs keep the search
        older_url=url(cursor=found.next_cursor) if found.next_cursor else None,
    )


async def script(request: Request) -> Response:
    """``/admin/admin.js``: the local-time script (no data, so no guard)."""
    if request.headers.get("if-none-match") == SCRIPT_ETAG:
        return Response(status_code=304, headers={"etag": SCRIPT_ETAG})
    headers = {
        "etag": SCRIPT_ETAG,
        "cache-control": "public, max-age=300",
        "x-content-type-options": "nosniff",
    }
    return Response(admin_ui.SCRIPT, media_type="text/javascript", headers=headers)


# --- actions (POST forms) -----------------------------------------------------


@page
async def replay_action(request: Request) -> Response:
    form = await auth.read_form(request)
    outcome = await replay(_runtime(request), request.path_params["event_id"])
    notice = {"ok": "replayed"}.get(outcome, outcome)
    return _redirect(_with_notice(_back(form, "/admin/deliveries"), notice))


@page
async def mark_action(request: Request) -> Response:
    form = await auth.read_form(request)
    handled = form.get("status", "handled") != "new"
    result = await Reader(_runtime(request)).mark(request.path_params["event_id"], handled)
    notice = "missing" if result is None else "handled" if handled else "reopened"
    return _redirect(_with_notice(_back(form, "/admin/inbox"), notice))


@page
async def test_event_action(request: Request) -> Response:
    runtime = _runtime(request)
    site_id = request.path_params["site"]
    if site_id not in runtime.sites:
        raise QueryError("site", f"no site {site_id!r}")
    await send_test_event(runtime, site_id)
    return _redirect("/admin/deliveries?notice=test_sent")


@page
async def erase_action(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    form = await auth.read_form(request)
    if not SESSION_ID.match(session_id):
        return _render(request, "error.html", 404, title="Not found", message="No such session.")
    if form.get("confirm") != "yes":
        message = "Tick the confirmation box to erase this session."
        return _render(request, "error.html", 400, title="Not erased", message=message)
    await erase_session(_runtime(request), session_id)
    return _redirect("/admin?notice=erased")


# --- login ------------------------------------------------------------------

CODE_PROBLEM = (
    "That sign-in link is not valid: it was used already, has expired or was mistyped. "
    "Run chatlead admin-url for a new one."
)


async def login(request: Request) -> Response:
    """The way in (no guard): a login code link (GET), the token form and its check (POST).

    The throttle applies: a network with too many failures is refused before
    anything is checked, and a wrong code or token counts as a failure.
    """
    creds = auth.credentials(request)
    try:
        snap = await creds.snapshot(auth.network_of(request))
        if auth.throttled(snap.failures):
            return auth.too_many(request, _refuse, snap.retry_after_s)
        if request.method == "GET":
            return await _login_get(request, creds, snap)
        return await _login_post(request, creds, snap)
    except StoreError as exc:
        log.warning("admin_store_unavailable error=%s", exc)
        return _render(request, "error.html", 503, title="Unavailable", message=UNAVAILABLE)


async def _login_get(request: Request, creds: auth.Credentials, snap: auth.Snapshot) -> Response:
    code = request.query_params.get("code")
    if code is None:
        return _render(request, "login.html", error=None, next="/admin")
    if not await creds.use_code(code):
        return await _login_failed(request, creds, CODE_PROBLEM)
    return _signed_in(request, snap, "/admin")


async def _login_post(request: Request, creds: auth.Credentials, snap: auth.Snapshot) -> Response:
    form = await auth.read_form(request)
    problem = auth.csrf_problem(
        method="POST",
        via="cookie",
        origin=request.headers.get("origin"),
        fetch_site=request.headers.get("sec-fetch-site"),
        own_origin=auth.own_origin(request),
        cookie_token=request.cookies.get(auth.CSRF_COOKIE),
        given_token=form.get(auth.CSRF_FIELD),
    )
    if problem:
        return _render(request, "login.html", 403, error=problem, next="/admin")
    if not auth.token_matches(form.get("token", "").strip(), snap.token):
        return await _login_failed(request, creds, "That token is not right.")
    return _signed_in(request, snap, _back({"back": form.get("next", "")}, "/admin"))


async def _login_failed(request: Request, creds: auth.Credentials, error: str) -> Response:
    retry = await auth.count_failure(request, creds)
    if retry:
        return auth.too_many(request, _refuse, retry)
    return _render(request, "login.html", 401, error=error, next="/admin")


def _signed_in(request: Request, snap: auth.Snapshot, to: str) -> Response:
    response = _redirect(to)
    auth.set_login_cookie(request, response, snap)
    return auth.finish(request, response)


@page
async def logout(request: Request) -> Response:
    """Sign out everywhere: every login cookie issued so far stops working."""
    await auth.credentials(request).sign_out_everywhere()
    response = _redirect("/admin/login?notice=logged_out")
    response.delete_cookie(auth.COOKIE, httponly=True, samesite="strict")
    return response


routes: list[BaseRoute] = [
    Route("/admin", dashboard, methods=["GET"]),
    Route("/admin/login", login, methods=["GET", "POST"]),
    Route("/admin/logout", logout, methods=["POST"]),
    Route("/admin/sessions/{session_id}", session_page, methods=["GET"]),
    Route("/admin/sessions/{session_id}/erase", erase_action, methods=["POST"]),
    Route("/admin/deliveries", deliveries_page, methods=["GET"]),
    Route("/admin/deliveries/{event_id}/replay", replay_action, methods=["POST"]),
    Route("/admin/sites/{site}/test-event", test_event_action, methods=["POST"]),
    Route("/admin/inbox", inbox_page, methods=["GET"]),
    Route("/admin/inbox/{event_id}/handled", mark_action, methods=["POST"]),
    Route("/admin/sessions", sessions_page, methods=["GET"]),
    Route("/admin/admin.js", script, methods=["GET"]),
]

_env = admin_ui.environment()
