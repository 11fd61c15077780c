"""The admin pages (``/admin*``): server-rendered HTML, no CDN, working without script.

Dashboard (totals per site, drop-off and per-day charts, abandoned leads with a
CSV link, test-event buttons), recovery (what became of abandoned chats), the
inbox (what each lead needs, new/handled, search, test events apart), the session
list, one page per session (transcript, fields, deliveries, erase) and the
delivery log (with replay). Every number and row comes from
:class:`.queries.Reader`, so pages and API always agree. Forms are plain POSTs
carrying the CSRF token (see :mod:`.auth`); sign-in and sign-out are in
:mod:`.routes_login`, the look in :mod:`.render` and ``templates/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import charts
from .access import read_form, runtime_of
from .commands import release, replay, send_test_event
from .erase import erase_session
from .health import DestinationHealth, targets
from .inbox import parse_inbox_query
from .params import SESSION_ID, Period, delivery_status, parse_period, session_status
from .queries import Reader
from .render import SCRIPT, STYLESHEET, back_to, page, redirect, render, with_notice
from .routes_login import login, logout

__all__ = ["routes"]

PAGE_ROWS = 25
PERIODS: tuple[tuple[str, str], ...] = (
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("365d", "Last 365 days"),
)


async def _health(reader: Reader, now_ms: int) -> dict[str, Any]:
    """What the health of every destination shows on a page: ``health`` (items),
    ``where`` (what each sends to) and ``now_ms`` (for "3 min ago")."""
    runtime = reader.runtime
    sites = list(runtime.sites.values())
    return {
        "health": await reader.destination_health(sites, now_ms),
        "where": targets(sites, runtime.hooks.current),
        "now_ms": now_ms,
    }


async def _scope(request: Request, reader: Reader) -> tuple[str | None, str, Period, int]:
    """A report page's ``site`` (None: all), ``since`` (default 30d), their period, and
    Redis' time now."""
    query = request.query_params
    since = query.get("since") or "30d"
    now_ms = await reader.now_ms()
    return query.get("site") or None, since, parse_period(since, query.get("until"), now_ms), now_ms


# --- pages ------------------------------------------------------------------


@page
async def dashboard(request: Request) -> Response:
    runtime = runtime_of(request)
    reader = Reader(runtime)
    query = request.query_params
    site_id, since, period, now_ms = await _scope(request, reader)
    report = await reader.report(site_id, period, query.get("cursor"), PAGE_ROWS)
    experiments = await reader.experiments(reader.sites(site_id), period)
    health = await _health(reader, now_ms)
    items: list[DestinationHealth] = health.pop("health")
    by_site: dict[str, list[DestinationHealth]] = {sid: [] for sid in runtime.sites}
    for item in items:
        by_site[item.site].append(item)
    everywhere = list(runtime.sites.values())
    overall = report.summary if site_id is None else await reader.summary(everywhere, period)
    filters = {k: v for k, v in (("site", site_id), ("since", since)) if v}
    csv_query = urlencode({**filters, "format": "csv", **dict(_until(query))})
    older = (
        "/admin?" + urlencode({**filters, **dict(_until(query)), "cursor": report.next_cursor})
        if report.next_cursor
        else None
    )
    return render(
        request,
        "dashboard.html",
        report=report,
        experiments=experiments,
        overall=overall,
        site_id=site_id,
        since=since,
        periods=_periods(since),
        sites=list(runtime.sites),
        health=by_site,
        failing=[item for item in items if item.state == "failing"],
        **health,
        drop_off_svg=charts.drop_off_chart(report.summary.drop_off),
        daily_svg=charts.daily_chart(report.summary.daily),
        csv_url="/api/reports/abandoned?" + csv_query,
        older_url=older,
        first_page=not query.get("cursor"),
        show_site=site_id is None and len(runtime.sites) > 1,
    )


@page
async def recovery_page(request: Request) -> Response:
    runtime = runtime_of(request)
    reader = Reader(runtime)
    site_id, since, period, _ = await _scope(request, reader)
    report = await reader.recovery(reader.sites(site_id), period)
    return render(
        request,
        "recovery.html",
        report=report,
        site_id=site_id,
        since=since,
        periods=_periods(since),
        sites=list(runtime.sites),
        labels=charts.STAGE_LABELS,
        chart_svg=charts.recovery_chart(report.stages),
        show_site=site_id is None and len(runtime.sites) > 1,
    )


def _until(query: Any) -> list[tuple[str, str]]:
    return [("until", query["until"])] if query.get("until") else []


@page
async def session_page(request: Request) -> Response:
    detail = await Reader(runtime_of(request)).session(request.path_params["session_id"])
    if detail is None:
        message = "No such session: it may have expired or been erased."
        return render(request, "error.html", 404, title="Not found", message=message)
    return render(request, "session.html", s=detail)


@page
async def deliveries_page(request: Request) -> Response:
    query = request.query_params
    status = delivery_status(query.get("status"))
    reader = Reader(runtime_of(request))
    items, cursor = await reader.deliveries(status, query.get("cursor"), 50)
    filters = {"status": status} if status else {}
    older = "/admin/deliveries?" + urlencode({**filters, "cursor": cursor}) if cursor else None
    return render(
        request,
        "deliveries.html",
        items=items,
        shown=status,
        older_url=older,
        show_site=len(reader.runtime.sites) > 1,
        **await _health(reader, await reader.now_ms()),
    )


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
    runtime = runtime_of(request)
    reader = Reader(runtime)
    query = request.query_params
    status = session_status(query.get("status"))
    site_id = query.get("site") or None
    since = query.get("since") or "7d"
    period = parse_period(since, query.get("until"), await reader.now_ms())
    found = await reader.sessions(site_id, period, status, query.get("cursor"), PAGE_ROWS)
    params = {"status": status, "site": site_id, "since": since, "until": query.get("until")}
    url = _paged("/admin/sessions", params)
    return render(
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
    runtime = runtime_of(request)
    query = request.query_params
    wanted = parse_inbox_query(query.get("status"), query.get("kind"), query.get("q"))
    found = await Reader(runtime).inbox(wanted, query.get("cursor"), PAGE_ROWS)
    params = {
        "status": wanted.status,
        "kind": None if wanted.kind == "leads" else wanted.kind,
        "q": wanted.search,
    }
    url = _paged("/admin/inbox", params)
    return render(
        request,
        "inbox.html",
        items=found.items,
        query=wanted,
        back=url(cursor=query.get("cursor")),
        show_site=len(runtime.sites) > 1,
        tab_url=_paged("/admin/inbox", {"q": wanted.search}),  # tabs keep the search
        older_url=url(cursor=found.next_cursor) if found.next_cursor else None,
    )


# --- actions (POST forms) -----------------------------------------------------


@page
async def replay_action(request: Request) -> Response:
    form = await read_form(request)
    outcome = await replay(runtime_of(request), request.path_params["event_id"])
    notice = {"ok": "replayed"}.get(outcome, outcome)
    return redirect(with_notice(back_to(form, "/admin/deliveries"), notice))


@page
async def mark_action(request: Request) -> Response:
    form = await read_form(request)
    handled = form.get("status", "handled") != "new"
    result = await Reader(runtime_of(request)).mark(request.path_params["event_id"], handled)
    notice = "missing" if result is None else "handled" if handled else "reopened"
    return redirect(with_notice(back_to(form, "/admin/inbox"), notice))


@page
async def test_event_action(request: Request) -> Response:
    await send_test_event(runtime_of(request), request.path_params["site"])
    return redirect("/admin/deliveries?notice=test_sent")


@page
async def erase_action(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    form = await read_form(request)
    if not SESSION_ID.match(session_id):
        return render(request, "error.html", 404, title="Not found", message="No such session.")
    if form.get("confirm") != "yes":
        message = "Tick the confirmation box to erase this session."
        return render(request, "error.html", 400, title="Not erased", message=message)
    await erase_session(runtime_of(request), session_id)
    return redirect("/admin?notice=erased")


@page
async def release_action(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    await read_form(request)  # the CSRF check
    if not SESSION_ID.match(session_id):
        return render(request, "error.html", 404, title="Not found", message="No such session.")
    outcome = await release(runtime_of(request), session_id)
    if outcome == "gone":
        return render(request, "error.html", 404, title="Not found", message="No such session.")
    return redirect(f"/admin/sessions/{session_id}?notice=released")


routes: list[BaseRoute] = [
    Route("/admin", dashboard, methods=["GET"]),
    Route("/admin/login", login, methods=["GET", "POST"]),
    Route("/admin/logout", logout, methods=["POST"]),
    Route("/admin/sessions/{session_id}", session_page, methods=["GET"]),
    Route("/admin/sessions/{session_id}/erase", erase_action, methods=["POST"]),
    Route("/admin/sessions/{session_id}/release", release_action, methods=["POST"]),
    Route("/admin/deliveries", deliveries_page, methods=["GET"]),
    Route("/admin/deliveries/{event_id}/replay", replay_action, methods=["POST"]),
    Route("/admin/sites/{site}/test-event", test_event_action, methods=["POST"]),
    Route("/admin/inbox", inbox_page, methods=["GET"]),
    Route("/admin/inbox/{event_id}/handled", mark_action, methods=["POST"]),
    Route("/admin/sessions", sessions_page, methods=["GET"]),
    Route("/admin/recovery", recovery_page, methods=["GET"]),
    Route("/admin/admin.js", SCRIPT.serve, methods=["GET"]),
    Route("/admin/admin.css", STYLESHEET.serve, methods=["GET"]),
]
