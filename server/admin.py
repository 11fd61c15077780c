"""The admin pages (``/admin*``): server-rendered HTML, no script, no CDN.

Dashboard (totals per site, drop-off and per-day charts, abandoned leads with a
CSV link, test-event buttons), one page per session (transcript, fields,
deliveries, erase), the delivery log (with replay) and the inbox. Every number
comes from :class:`server.api.Reader`, so pages and API always agree. Text from
visitors is escaped by Jinja2's autoescaping; forms are plain POSTs carrying the
CSRF token (see :mod:`server.auth`).
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from server import auth, charts, reports
from server.api import SESSION_ID, Reader, replay, send_test_event
from server.erase import erase_session
from server.errors import StoreError
from server.outbox import Outbox
from server.reports import DeliveryAttempt, QueryError
from server.runtime import Runtime

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
}
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _when(iso: str | None) -> str:
    """``2024-05-01T09:30:12.345Z`` as ``2024-05-01 09:30 UTC``."""
    if not iso:
        return "—"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def _outcome(attempt: DeliveryAttempt) -> str:
    """One attempt in a few words: ``HTTP 503 · 1,204 ms`` or ``timeout · 15,000 ms``."""
    parts = [f"HTTP {attempt.status_code}"] if attempt.status_code is not None else []
    if attempt.error and attempt.error not in parts:
        parts.append(attempt.error)
    if not parts:
        parts.append("ok")
    if attempt.latency_ms is not None:
        parts.append(f"{attempt.latency_ms:,.0f} ms")
    return " · ".join(parts)


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f} %"


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
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["content-security-policy"] = CSP
    return auth.finish(request, response)


def _refuse(request: Request, status: int, reason: str) -> Response:
    if status == 401:
        return _render(request, "login.html", 401, error=None, next=request.url.path)
    return _render(request, "error.html", status, title="Not allowed", message=reason)


def page(fn: auth.Endpoint) -> auth.Endpoint:
    """Admin-only; bad queries as a 400 page, Redis outages as a 503 page."""

    async def run(request: Request) -> Response:
        try:
            return await fn(request)
        except QueryError as exc:
            status = 404 if exc.param == "site" else 400
            return _render(request, "error.html", status, title="Bad request", message=str(exc))
        except StoreError as exc:
            log.warning("admin_store_unavailable error=%s", exc)
            message = "Redis is unavailable; try again shortly."
            return _render(request, "error.html", 503, title="Unavailable", message=message)

    run.__name__ = fn.__name__
    return auth.guard(_refuse)(run)


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
        periods=PERIODS if since in dict(PERIODS) else (*PERIODS, (since, since)),
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


@page
async def inbox_page(request: Request) -> Response:
    items = await Outbox(_runtime(request).store).inbox()
    wants_json = "application/json" in request.headers.get("accept", "")
    if wants_json or request.query_params.get("format") == "json":
        return JSONResponse({"items": items}, headers={"cache-control": "no-store"})
    return _render(request, "inbox.html", items=[_inbox_row(item) for item in items])


def _inbox_row(item: dict[str, Any]) -> dict[str, Any]:
    """What the inbox table shows of one delivered payload (tolerant of odd entries)."""
    data = item.get("data")
    lead: dict[str, Any] = data if isinstance(data, dict) else {}
    fields = {
        f.get("name"): f.get("value") for f in lead.get("fields") or [] if isinstance(f, dict)
    }
    session_id = lead.get("sessionId")
    real = item.get("type") != "lead.test" and isinstance(session_id, str)
    transcript = [m for m in lead.get("transcript") or [] if isinstance(m, dict)]
    return {
        "type": str(item.get("type", "")),
        "site": str(item.get("site", "")),
        "name": fields.get("name"),
        "email": fields.get("email"),
        "phone": fields.get("phone"),
        "messages": len(transcript),
        "last": str(transcript[-1].get("createdTime", "")) if transcript else None,
        "session_id": session_id if real and SESSION_ID.match(str(session_id)) else None,
    }


# --- actions (POST forms) -----------------------------------------------------


@page
async def replay_action(request: Request) -> Response:
    form = await auth.read_form(request)
    outcome = await replay(_runtime(request), request.path_params["event_id"])
    notice = {"ok": "replayed"}.get(outcome, outcome)
    return _redirect(_with_notice(_back(form, "/admin/deliveries"), notice))


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


async def login(request: Request) -> Response:
    """The token form (GET) and its check (POST); no guard: this is the way in."""
    runtime = _runtime(request)
    token = runtime.settings.admin_token
    if not token:
        return _redirect("/admin")
    if request.method == "GET":
        return _render(request, "login.html", error=None, next="/admin")
    form = await auth.read_form(request)
    problem = auth.csrf_problem(
        method="POST",
        via="cookie",
        origin=request.headers.get("origin"),
        fetch_site=request.headers.get("sec-fetch-site"),
        own_origin=auth.own_origin(request),
        has_cookies=True,
        cookie_token=request.cookies.get(auth.CSRF_COOKIE),
        given_token=form.get(auth.CSRF_FIELD),
    )
    if problem:
        return _render(request, "login.html", 403, error=problem, next="/admin")
    given = form.get("token", "").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _render(request, "login.html", 401, error="That token is not right.", next="/admin")
    response = _redirect(_back({"back": form.get("next", "")}, "/admin"))
    auth.set_login_cookie(request, response, token)
    return auth.finish(request, response)


@page
async def logout(request: Request) -> Response:
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
]


# --- templates ----------------------------------------------------------------

_CSS = """
:root{--fg:#111827;--muted:#4b5563;--line:#d1d5db;--bg:#f3f4f6;--card:#fff;--accent:#1d4ed8;
--danger:#b91c1c}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
a{color:var(--accent)}
.skip{position:absolute;left:-9999px}.skip:focus{left:8px;top:8px;background:#fff;padding:6px 10px;
z-index:10}
.sr-only{position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;overflow:hidden;
clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
header.top{background:#111827;color:#fff}
.top .inner{max-width:1240px;margin:0 auto;padding:10px 20px;display:flex;align-items:center;
gap:20px;flex-wrap:wrap}
.brand{font-weight:700;font-size:18px;color:#fff;text-decoration:none;margin-right:8px}
.top nav ul{list-style:none;display:flex;gap:4px;margin:0;padding:0}
.top nav a{color:#e5e7eb;text-decoration:none;padding:6px 12px;border-radius:6px;display:block}
.top nav a[aria-current=page]{background:#374151;color:#fff}
.top nav a:hover{background:#1f2937;color:#fff}
.top form{margin-left:auto}
main{max-width:1240px;margin:0 auto;padding:20px}
h1{font-size:26px;margin:4px 0}h2{font-size:18px;margin:0 0 12px}
.muted{color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 20px;
margin-bottom:20px;overflow-x:auto;position:relative}
.notice{background:#dbeafe;border:1px solid #93c5fd;color:#1e3a8a;padding:10px 14px;
border-radius:8px;margin-bottom:16px}
.error{background:#fee2e2;border:1px solid #fca5a5;color:#7f1d1d;padding:10px 14px;
border-radius:8px;margin-bottom:16px}
.filters{display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.filters label{font-weight:600}
select,input[type=password],input[type=text]{font:inherit;padding:6px 8px;border:1px solid #6b7280;
border-radius:6px;background:#fff;color:var(--fg)}
button,.button{font:inherit;font-weight:600;padding:6px 14px;border-radius:6px;
border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;
text-decoration:none;display:inline-block;line-height:1.4}
button.secondary,.button.secondary{background:#fff;color:var(--accent)}
button.small{padding:2px 10px;font-size:14px}
button.danger{background:var(--danger);border-color:var(--danger)}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px}
.kpi{border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.kpi .label{color:var(--muted);font-size:14px}.kpi .value{font-size:28px;font-weight:700}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:8px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:13px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em;
white-space:nowrap}
tbody tr:nth-child(even){background:#f9fafb}
.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{overflow-wrap:break-word;max-width:240px}
td.email{min-width:13em}
td.result{min-width:12em}
table.leads{font-size:14px}
table.leads th,table.leads td{padding:7px 6px}
table.leads thead th{text-transform:none;letter-spacing:0;font-size:13px}
.nowrap{white-space:nowrap}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:13px;font-weight:600;
white-space:nowrap}
.badge.delivered,.badge.completed,.badge.yes{background:#d1fae5;color:#065f46}
.badge.dead,.badge.abandoned{background:#fee2e2;color:#991b1b}
.badge.pending,.badge.open{background:#fef3c7;color:#78350f}
.badge.none,.badge.no{background:#e5e7eb;color:#374151}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:20px}
figure{margin:0}figure svg{width:100%;height:auto;display:block}
details{margin-top:8px}summary{cursor:pointer;color:var(--accent)}
.row{display:flex;align-items:center;justify-content:space-between;gap:12px;flex-wrap:wrap}
.row h2{margin:0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
ol.transcript{list-style:none;padding:0;margin:0}
ol.transcript li{padding:8px 12px;border-radius:8px;margin:0 0 8px;max-width:760px}
ol.transcript li.bot,ol.transcript li.agent{background:#eef2ff}
ol.transcript li.visitor{background:#ecfdf5;margin-left:auto}
.who{font-weight:600;font-size:13px;color:var(--muted)}
.text{white-space:pre-wrap;overflow-wrap:anywhere}
.tabs{display:flex;gap:6px;list-style:none;padding:0;margin:0 0 12px}
.tabs a{display:block;padding:4px 12px;border:1px solid var(--line);border-radius:999px;
text-decoration:none}
.tabs a[aria-current=page]{background:var(--accent);color:#fff;border-color:var(--accent)}
form.inline{display:inline}
.login{max-width:420px;margin:60px auto}
.login label{display:block;font-weight:600;margin-bottom:6px}
.login input{width:100%;margin-bottom:14px}
"""

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · chatlead admin</title>
<style>{% include "admin.css" %}</style></head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top"><div class="inner">
<a class="brand" href="/admin">chatlead</a>
<nav aria-label="Admin"><ul>
{% for href, label in [("/admin", "Dashboard"), ("/admin/deliveries", "Deliveries"),
                       ("/admin/inbox", "Inbox")] %}
<li><a href="{{ href }}"{% if path == href %} aria-current="page"{% endif %}>{{ label }}</a></li>
{% endfor %}
</ul></nav>
{% if signed_in %}
<form method="post" action="/admin/logout">{{ csrf_input }}
<button class="secondary small" type="submit">Sign out</button></form>
{% endif %}
</div></header>
<main id="main">
{% if notice %}<p class="notice" role="status">{{ notice }}</p>{% endif %}
{% block main %}{% endblock %}
</main></body></html>"""

_DASHBOARD = """{% extends "base.html" %}
{% block title %}Dashboard{% endblock %}
{% block main %}
{% set s = report.summary %}
<h1>Leads dashboard</h1>
<p class="muted">{{ s.first_day }} to {{ s.last_day }} (UTC days){% if site_id %}
 · site <strong>{{ site_id }}</strong>{% else %} · all sites{% endif %}</p>
<form class="card filters" method="get" action="/admin">
<label for="f-site">Site</label>
<select id="f-site" name="site"><option value="">All sites</option>
{% for sid in sites %}<option value="{{ sid }}"{% if sid == site_id %} selected{% endif %}>{{ sid }}
</option>{% endfor %}</select>
<label for="f-since">Period</label>
<select id="f-since" name="since">
{% for value, label in periods %}<option value="{{ value }}"{% if value == since %} selected
{% endif %}>{{ label }}</option>{% endfor %}</select>
<button type="submit">Apply</button>
</form>

<section class="card" aria-labelledby="h-totals">
<h2 id="h-totals">Totals</h2>
<div class="kpis">
{% for label, value in [("Sessions started", s.started), ("Completed", s.completed),
                        ("Abandoned", s.abandoned), ("Recovered", s.recovered),
                        ("Abandonment rate", s.abandonment_rate|percent)] %}
<div class="kpi"><div class="label">{{ label }}</div><div class="value">{{ value }}</div></div>
{% endfor %}
</div>
</section>

<section class="card" aria-labelledby="h-sites">
<h2 id="h-sites">Sites</h2>
<table><caption class="sr-only">Totals per site for the period</caption>
<thead><tr><th scope="col">Site</th><th scope="col">Leads go to</th>
<th scope="col" class="num">Started</th><th scope="col" class="num">Completed</th>
<th scope="col" class="num">Abandoned</th><th scope="col" class="num">Recovered</th>
<th scope="col" class="num">Abandonment rate</th><th scope="col">Check delivery</th></tr></thead>
<tbody>
{% for row in overall.sites %}
<tr><th scope="row">
<a href="/admin?site={{ row.site }}&amp;since={{ since }}">{{ row.site }}</a></th>
<td>{{ targets[row.site] }}</td>
<td class="num">{{ row.started }}</td><td class="num">{{ row.completed }}</td>
<td class="num">{{ row.abandoned }}</td><td class="num">{{ row.recovered }}</td>
<td class="num">{{ row.abandonment_rate|percent }}</td>
<td><form class="inline" method="post" action="/admin/sites/{{ row.site }}/test-event">
{{ csrf_input }}
<button class="secondary small" type="submit">Send test event<span class="sr-only"> to
 {{ row.site }}</span></button></form></td></tr>
{% endfor %}
</tbody></table>
</section>

<div class="charts">
<section class="card" aria-labelledby="h-funnel">
<h2 id="h-funnel">Drop-off by flow step</h2>
<figure role="img" aria-labelledby="h-funnel">{{ drop_off_svg|safe }}</figure>
<details><summary>Drop-off numbers</summary>
<table><thead><tr><th scope="col">Step</th><th scope="col">Question</th>
<th scope="col" class="num">Reached</th><th scope="col" class="num">Abandoned here</th></tr></thead>
<tbody>{% for step in s.drop_off %}<tr><th scope="row">{{ step.step }}</th>
<td>{{ step.question or "—" }}</td><td class="num">{{ step.reached }}</td>
<td class="num">{{ step.stopped }}</td></tr>{% endfor %}</tbody></table></details>
</section>
<section class="card" aria-labelledby="h-daily">
<h2 id="h-daily">Sessions per day</h2>
<figure role="img" aria-labelledby="h-daily">{{ daily_svg|safe }}</figure>
<details><summary>Daily numbers</summary>
<table><thead><tr><th scope="col">Day</th><th scope="col" class="num">Started</th>
<th scope="col" class="num">Completed</th><th scope="col" class="num">Abandoned</th>
<th scope="col" class="num">Recovered</th></tr></thead>
<tbody>{% for d in s.daily %}<tr><th scope="row">{{ d.day }}</th>
<td class="num">{{ d.started }}</td>
<td class="num">{{ d.completed }}</td><td class="num">{{ d.abandoned }}</td>
<td class="num">{{ d.recovered }}</td></tr>{% endfor %}</tbody></table></details>
</section>
</div>

<section class="card" aria-labelledby="h-leads">
<div class="row"><h2 id="h-leads">Abandoned leads{% if not first_page %} (older){% endif %}</h2>
<a class="button" href="{{ csv_url }}">Download CSV<span class="sr-only"> of all abandoned leads in
 this period</span></a></div>
{% if report.items %}
<table class="leads"><caption class="sr-only">Abandoned sessions, newest first</caption>
<thead><tr><th scope="col">Abandoned</th>{% if show_site %}<th scope="col">Site</th>{% endif %}
<th scope="col">Name</th><th scope="col">Email</th><th scope="col">Phone</th>
<th scope="col">Company</th><th scope="col">Stopped at</th><th scope="col">Contactable</th>
<th scope="col">Recovered</th>
<th scope="col">Delivery</th></tr></thead>
<tbody>
{% for r in report.items %}
<tr><td class="nowrap"><a href="/admin/sessions/{{ r.session_id }}">{{ r.abandoned_at|when }}
<span class="sr-only">, session {{ r.session_id }}</span></a></td>
{% if show_site %}<td>{{ r.site }}</td>{% endif %}
<td class="wrap">{{ r.name or "—" }}</td><td class="wrap email">{{ r.email or "—" }}</td>
<td class="nowrap">{{ r.phone or "—" }}</td><td class="wrap">{{ r.company or "—" }}</td>
<td>{{ r.step }}</td>
{% for flag in (r.contactable, r.recovered) %}{% set yes = "yes" if flag else "no" %}
<td><span class="badge {{ yes }}">{{ yes }}</span></td>{% endfor %}
<td><span class="badge {{ r.delivery }}">{{ r.delivery }}</span></td></tr>
{% endfor %}
</tbody></table>
{% else %}
<p>No abandoned sessions in this period.</p>
{% endif %}
{% if older_url %}<p><a href="{{ older_url }}">Older leads →</a></p>{% endif %}
</section>
{% endblock %}"""

_DELIVERY_ROWS = """<table><caption class="sr-only">Delivery log, newest first</caption>
<thead><tr><th scope="col">Created</th><th scope="col">Event</th><th scope="col">Site</th>
<th scope="col">Session</th><th scope="col">Status</th><th scope="col" class="num">Attempts</th>
<th scope="col">Last result</th><th scope="col">Next attempt</th>
<th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody>
{% for d in items %}
<tr><td class="nowrap">{{ d.created_at|when }}</td><td>{{ d.event }}</td><td>{{ d.site }}</td>
<td>{% if d.event == "lead.test" %}test{% else %}<a href="/admin/sessions/{{ d.session_id }}">
{{ d.session_id[:8] }}…</a>{% endif %}</td>
<td><span class="badge {{ d.status }}">{{ d.status }}</span></td>
<td class="num">{{ d.attempts|length }}</td>
<td class="wrap result">{% if d.attempts %}{{ d.attempts[-1]|outcome }}{% else %}—{% endif %}</td>
<td class="nowrap">{{ d.next_attempt_at|when }}</td>
<td>{% if d.status != "pending" %}<form class="inline" method="post"
 action="/admin/deliveries/{{ d.id }}/replay">{{ csrf_input }}
<input type="hidden" name="back" value="{{ back }}">
<button class="secondary small" type="submit">Replay<span class="sr-only"> {{ d.id }}</span>
</button></form>{% endif %}</td></tr>
{% endfor %}
</tbody></table>"""

_DELIVERIES = """{% extends "base.html" %}
{% block title %}Deliveries{% endblock %}
{% block main %}
<h1>Deliveries</h1>
<p class="muted">Every lead event and each attempt to deliver it. Delivered and dead events can be
 replayed.</p>
<section class="card" aria-labelledby="h-log">
<h2 id="h-log" class="sr-only">Delivery log</h2>
<nav aria-label="Filter by status"><ul class="tabs">
{% for value, label in [(none, "All"), ("pending", "Pending"), ("delivered", "Delivered"),
                        ("dead", "Dead")] %}
<li><a href="/admin/deliveries{% if value %}?status={{ value }}{% endif %}"
{% if value == shown %} aria-current="page"{% endif %}>{{ label }}</a></li>
{% endfor %}</ul></nav>
{% if items %}{% set back = path ~ ("?status=" ~ shown if shown else "") %}
{% include "delivery_rows.html" %}
{% else %}<p>No deliveries{% if shown %} with status {{ shown }}{% endif %}.</p>{% endif %}
{% if older_url %}<p><a href="{{ older_url }}">Older deliveries →</a></p>{% endif %}
</section>
{% endblock %}"""

_SESSION = """{% extends "base.html" %}
{% block title %}Session {{ s.id }}{% endblock %}
{% block main %}
<h1>Session <code>{{ s.id }}</code></h1>
<p><span class="badge {{ s.status }}">{{ s.status }}</span>{% if s.recovered %}
 <span class="badge yes">recovered</span>{% endif %}</p>
<div class="charts">
<section class="card" aria-labelledby="h-facts"><h2 id="h-facts">Session</h2>
<dl class="facts">
<dt>Site</dt><dd>{{ s.site }}</dd><dt>Visitor id</dt><dd>{{ s.user_id or "—" }}</dd>
<dt>Started</dt><dd>{{ s.created_at|when }}</dd>
<dt>Last activity</dt><dd>{{ s.last_activity_at|when }}</dd>
<dt>Abandoned</dt><dd>{{ s.abandoned_at|when }}</dd>
<dt>Completed</dt><dd>{{ s.completed_at|when }}</dd>
<dt>Flow step</dt><dd>{{ s.step or "—" }}</dd>
{% for name, value in s.page.items() %}<dt>{{ name }}</dt><dd>{{ value }}</dd>{% endfor %}
</dl></section>
<section class="card" aria-labelledby="h-fields"><h2 id="h-fields">Captured fields</h2>
{% if s.fields %}<dl class="facts">{% for name, value in s.fields.items() %}<dt>{{ name }}</dt>
<dd>{{ value }}</dd>{% endfor %}</dl>{% else %}<p>Nothing captured yet.</p>{% endif %}
</section>
</div>
<section class="card" aria-labelledby="h-transcript"><h2 id="h-transcript">Transcript</h2>
<ol class="transcript">
{% for m in s.transcript %}<li class="{{ m.sender }}"><div class="who">{{ m.sender }} ·
 {{ m.ts|when }}{% if m.field %} · {{ m.field }}{% endif %}</div>
<div class="text">{{ m.text }}</div></li>{% endfor %}
</ol></section>
<section class="card" aria-labelledby="h-deliveries"><h2 id="h-deliveries">Deliveries</h2>
{% set items = s.deliveries %}{% set back = path %}
{% if items %}{% include "delivery_rows.html" %}
{% else %}<p>No lead events for this session.</p>{% endif %}
</section>
<section class="card" aria-labelledby="h-erase"><h2 id="h-erase">Erase personal data</h2>
<p>Deletes the transcript, fields and page data of this session everywhere chatlead stores them
 (session, outbox, inbox, reports). Anonymous counters stay. This cannot be undone.</p>
<form method="post" action="/admin/sessions/{{ s.id }}/erase">{{ csrf_input }}
<p><input type="checkbox" id="confirm" name="confirm" value="yes" required>
<label for="confirm">I want to erase this session's personal data</label></p>
<button class="danger" type="submit">Erase session</button></form>
</section>
{% endblock %}"""

_INBOX = """{% extends "base.html" %}
{% block title %}Inbox{% endblock %}
{% block main %}
<h1>Inbox</h1>
<p class="muted">Leads of sites without a webhook land here, newest first.</p>
<section class="card" aria-labelledby="h-inbox"><h2 id="h-inbox" class="sr-only">Inbox leads</h2>
{% if items %}
<table><caption class="sr-only">Leads in the inbox, newest first</caption>
<thead><tr><th scope="col">Last message</th><th scope="col">Event</th><th scope="col">Site</th>
<th scope="col">Name</th>
<th scope="col">Email</th><th scope="col">Phone</th><th scope="col">Messages</th>
<th scope="col">Session</th></tr></thead><tbody>
{% for item in items %}
<tr><td class="nowrap">{{ item.last|when }}</td><td>{{ item.type }}</td><td>{{ item.site }}</td>
<td class="wrap">{{ item.name or "—" }}</td><td class="wrap">{{ item.email or "—" }}</td>
<td class="nowrap">{{ item.phone or "—" }}</td><td class="num">{{ item.messages }}</td>
<td>{% if item.session_id %}<a href="/admin/sessions/{{ item.session_id }}">
{{ item.session_id[:8] }}…</a>{% else %}test{% endif %}</td></tr>
{% endfor %}
</tbody></table>
{% else %}<p>The inbox is empty.</p>{% endif %}
</section>
{% endblock %}"""

_LOGIN = """{% extends "base.html" %}
{% block title %}Sign in{% endblock %}
{% block main %}
<div class="card login">
<h1>Sign in</h1>
<p class="muted">Enter the admin token (<code>CHATLEAD_ADMIN_TOKEN</code>).</p>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/admin/login">{{ csrf_input }}
<input type="hidden" name="next" value="{{ next }}">
<label for="token">Admin token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></div>
{% endblock %}"""

_ERROR = """{% extends "base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block main %}
<div class="card"><h1>{{ title }}</h1><p class="error" role="alert">{{ message }}</p>
<p><a href="/admin">Back to the dashboard</a></p></div>
{% endblock %}"""

TEMPLATES = {
    "admin.css": _CSS,
    "base.html": _BASE,
    "delivery_rows.html": _DELIVERY_ROWS,
    "dashboard.html": _DASHBOARD,
    "deliveries.html": _DELIVERIES,
    "session.html": _SESSION,
    "inbox.html": _INBOX,
    "login.html": _LOGIN,
    "error.html": _ERROR,
}

_env = Environment(
    loader=DictLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = _when
_env.filters["percent"] = _percent
_env.filters["outcome"] = _outcome
