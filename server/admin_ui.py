"""The admin pages' look: Jinja2 templates, the stylesheet and the one small script.

Pages are server-rendered and work without script. The script (``/admin/admin.js``,
same origin, allowed by the pages' ``script-src 'self'``) only rewrites each
``<time datetime="…Z">`` from UTC into the browser's local time; exports, CSV and
the API stay in UTC. Every value is escaped by Jinja2's autoescaping.

Tables are stacked into labelled cards below 720 px, so no page scrolls sideways
on a phone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from markupsafe import Markup

from .reports import DeliveryAttempt

__all__ = ["CSP", "SCRIPT", "environment", "local_time", "outcome", "percent"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SCRIPT = """// chatlead admin: show every <time datetime> in the browser's local time.
(function () {
  "use strict";
  var day = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
  });
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  document.querySelectorAll("time[datetime]").forEach(function (node) {
    var at = new Date(node.getAttribute("datetime"));
    if (isNaN(at.getTime())) { return; }
    node.title = node.textContent.trim();
    node.textContent = day.format(at);
  });
  document.querySelectorAll("[data-zone]").forEach(function (node) {
    node.textContent = "Times in " + zone;
  });
})();
"""


def local_time(iso: str | None) -> Markup:
    """``<time datetime="…">2024-05-01 09:30 UTC</time>``, or a dash for no time."""
    if not iso:
        return Markup('<span class="muted">—</span>')
    try:
        shown = datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return Markup("{}").format(iso)
    return Markup('<time datetime="{}">{}</time>').format(iso, shown)


def outcome(attempt: DeliveryAttempt) -> str:
    """One attempt in a few words: ``HTTP 503 · 1,204 ms`` or ``timeout · 15,000 ms``."""
    parts = [f"HTTP {attempt.status_code}"] if attempt.status_code is not None else []
    if attempt.error and attempt.error not in parts:
        parts.append(attempt.error)
    if not parts:
        parts.append("ok")
    if attempt.latency_ms is not None:
        parts.append(f"{attempt.latency_ms:,.0f} ms")
    return " · ".join(parts)


def percent(rate: float) -> str:
    return f"{rate * 100:.1f} %"


_CSS = """
:root{--fg:#0f172a;--muted:#475569;--faint:#5b6577;--line:#e2e8f0;--bg:#f5f7fb;--card:#fff;
--accent:#2953d6;--accent-soft:#eef2ff;--danger:#b42318;--ok:#067647;--warn:#92400e;
--radius:12px;--shadow:0 1px 2px rgba(15,23,42,.06),0 1px 3px rgba(15,23,42,.04)}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",sans-serif;
color:var(--fg);background:var(--bg)}
a{color:var(--accent);text-decoration-thickness:1px;text-underline-offset:2px}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.skip{position:absolute;left:-9999px}.skip:focus{left:8px;top:8px;background:#fff;padding:6px 10px;
z-index:10}
.sr-only{position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;overflow:hidden;
clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
header.top{background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:5}
.top .inner{max-width:1280px;margin:0 auto;padding:0 24px;display:flex;align-items:center;gap:24px;
min-height:60px}
.brand{display:flex;align-items:center;gap:10px;font-weight:700;font-size:17px;color:var(--fg);
text-decoration:none;white-space:nowrap}
.brand .mark{width:28px;height:28px;border-radius:9px;display:grid;
background:linear-gradient(135deg,#2953d6,#7c3aed);place-items:center;color:#fff;font-size:15px}
.top nav{min-width:0;flex:1;overflow-x:auto;scrollbar-width:none}
.top nav::-webkit-scrollbar{display:none}
.top nav ul{list-style:none;display:flex;gap:4px;margin:0;padding:0}
.top nav a{color:var(--muted);text-decoration:none;padding:8px 12px;border-radius:8px;display:block;
font-weight:550;white-space:nowrap}
.top nav a:hover{background:#f1f5f9;color:var(--fg)}
.top nav a[aria-current=page]{background:var(--accent-soft);color:var(--accent)}
.top form{margin-left:auto}
main{max-width:1280px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:24px;line-height:1.25;margin:0;letter-spacing:-.01em}
h2{font-size:16px;margin:0 0 14px}
.page-head{display:flex;align-items:flex-end;justify-content:space-between;gap:16px;flex-wrap:wrap;
margin-bottom:20px}
.page-head p{margin:4px 0 0}
.muted{color:var(--muted)}.faint{color:var(--faint);font-size:13px}
.card{background:var(--card);border:1px solid var(--line);border-radius:var(--radius);
box-shadow:var(--shadow);padding:20px;margin-bottom:20px;min-width:0}
.card.flush{padding:0}.card.flush>.card-head{padding:16px 20px 0}
.card-head{display:flex;align-items:center;justify-content:space-between;gap:12px;flex-wrap:wrap;
margin-bottom:14px}.card-head h2{margin:0}
.notice{background:#ecfdf3;border:1px solid #abefc6;color:#054f31;padding:10px 14px;
border-radius:10px;margin:0 0 18px}
.error{background:#fef3f2;border:1px solid #fecdca;color:#7a271a;padding:10px 14px;
border-radius:10px;margin:0 0 16px}
.toolbar{display:flex;gap:10px 14px;align-items:center;flex-wrap:wrap}
.toolbar label{font-weight:600;font-size:14px}
.toolbar .field{display:flex;align-items:center;gap:8px}
form.search{display:flex;gap:8px;flex:0 1 440px;min-width:0}
form.search input{flex:1;min-width:0}
select,input[type=password],input[type=text],input[type=search]{font:inherit;padding:7px 10px;
border:1px solid #94a3b8;border-radius:8px;background:#fff;color:var(--fg);max-width:100%}
input[type=search]{width:100%}
button,.button{font:inherit;font-weight:600;font-size:14px;padding:7px 14px;border-radius:8px;
border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer;
text-decoration:none;display:inline-flex;align-items:center;gap:6px;line-height:1.35;
white-space:nowrap}
button:hover,.button:hover{filter:brightness(.95)}
button.secondary,.button.secondary{background:#fff;color:var(--fg);border-color:#cbd5e1}
button.secondary:hover,.button.secondary:hover{background:#f8fafc}
button.small,.button.small{padding:3px 10px;font-size:13px}
button.danger{background:var(--danger);border-color:var(--danger)}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:14px;margin-bottom:20px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:var(--radius);
box-shadow:var(--shadow);padding:14px 18px}
.kpi .label{color:var(--muted);font-size:13px;font-weight:550}
.kpi .value{font-size:28px;font-weight:700;letter-spacing:-.02em;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(440px,100%),1fr));gap:20px}
.charts>.card{margin-bottom:20px}
figure{margin:0}figure svg{width:100%;height:auto;display:block}
details{margin-top:10px}summary{cursor:pointer;color:var(--accent);font-size:14px;font-weight:550}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:10px 12px;border-bottom:1px solid var(--line);vertical-align:middle}
thead th{font-size:12px;color:var(--faint);text-transform:uppercase;letter-spacing:.04em;
font-weight:650;white-space:nowrap;background:#f8fafc}
tbody tr:hover{background:#f8fafc}
tbody tr:last-child>*{border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{overflow-wrap:anywhere;max-width:260px}
.nowrap{white-space:nowrap}
.who{font-weight:600}.who a{color:var(--fg);text-decoration:none}.who a:hover{color:var(--accent)}
.sub{display:block;color:var(--muted);font-size:13px;overflow-wrap:anywhere}
.need{max-width:320px;overflow-wrap:anywhere;display:-webkit-box;-webkit-line-clamp:2;
-webkit-box-orient:vertical;overflow:hidden}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:650;
white-space:nowrap;border:1px solid transparent}
.badge.delivered,.badge.completed,.badge.yes,.badge.handled{background:#ecfdf3;color:#067647;
border-color:#abefc6}
.badge.dead,.badge.abandoned{background:#fef3f2;color:#b42318;border-color:#fecdca}
.badge.pending,.badge.open,.badge.new{background:#fffaeb;color:#93370d;border-color:#fedf89}
.badge.none,.badge.no,.badge.test{background:#f2f4f7;color:#344054;border-color:#e4e7ec}
.badge.recovered{background:#eef4ff;color:#3538cd;border-color:#c7d7fe}
.tabs{display:flex;gap:6px;list-style:none;padding:0;margin:0;flex-wrap:wrap}
.tabs a{display:block;padding:5px 12px;border:1px solid var(--line);border-radius:999px;
text-decoration:none;color:var(--muted);font-size:14px;font-weight:550;background:#fff}
.tabs a:hover{color:var(--fg);border-color:#cbd5e1}
.tabs a[aria-current=page]{background:var(--fg);color:#fff;border-color:var(--fg)}
.pager{display:flex;justify-content:flex-end;gap:10px;padding:14px 20px;
border-top:1px solid var(--line)}
.empty{padding:36px 20px;text-align:center;color:var(--muted)}
.empty strong{display:block;color:var(--fg);font-size:16px;margin-bottom:4px}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:8px 18px;margin:0}
dl.facts dt{color:var(--muted);font-size:14px}dl.facts dd{margin:0;overflow-wrap:anywhere}
ol.transcript{list-style:none;padding:0;margin:0;display:flex;flex-direction:column;gap:10px}
ol.transcript li{padding:10px 14px;border-radius:14px;max-width:min(640px,88%)}
ol.transcript li.bot,ol.transcript li.agent{background:#f1f5f9;border-bottom-left-radius:4px}
ol.transcript li.visitor{background:var(--accent);color:#fff;margin-left:auto;
border-bottom-right-radius:4px}
ol.transcript li.visitor .meta{color:#dbe4ff}
.meta{font-size:12px;color:var(--faint);margin-bottom:2px}
.text{white-space:pre-wrap;overflow-wrap:anywhere}
form.inline{display:inline}
.danger-zone{border-color:#fecdca}
.login{max-width:400px;margin:8vh auto 0;padding:28px}
.login h1{margin-bottom:6px}
.login label{display:block;font-weight:600;margin-bottom:6px}
.login input{width:100%;margin-bottom:14px}
.login button{width:100%;justify-content:center;padding:9px 14px}
@media (max-width:720px){
.top .inner{padding:0 14px;gap:0 12px;flex-wrap:wrap;min-height:54px}
.top nav{order:3;flex-basis:100%;margin:0 -14px;padding:0 8px 8px}
.top nav a{padding:6px 10px}
main{padding:18px 14px 40px}
h1{font-size:21px}
.page-head{align-items:stretch;flex-direction:column;gap:14px}
.toolbar{flex-wrap:nowrap;align-items:flex-end;gap:8px}
.toolbar .field{flex:1;min-width:0;flex-direction:column;align-items:stretch;gap:2px}
.toolbar select{width:100%}
.card{padding:16px}.card.flush>.card-head{padding:14px 16px 0}
form.search{flex-basis:100%}
.kpis{grid-template-columns:repeat(2,minmax(0,1fr));gap:10px}
.kpi{padding:12px 14px}.kpi .value{font-size:24px}
table.stack thead{display:none}
table.stack,table.stack tbody{display:block;width:100%}
table.stack tr{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:8px 16px;
padding:14px 16px;border-bottom:1px solid var(--line)}
table.stack tbody tr:last-child{border-bottom:0}
table.stack td,table.stack th{display:block;border:0;padding:0;max-width:none;text-align:left;
min-width:0}
table.stack td[data-label]::before,table.stack th[data-label]::before{content:attr(data-label);
display:block;color:var(--faint);font-size:11px;font-weight:650;text-transform:uppercase;
letter-spacing:.04em}
table.stack .lead,table.stack .wide{grid-column:1/-1}
table.stack td:not([data-label]):not(.lead){grid-column:1/-1}
table.stack td:not([data-label]):not(.lead):empty{display:none}
.need{max-width:none}
dl.facts{grid-template-columns:minmax(0,1fr);gap:2px}dl.facts dd{margin-bottom:8px}
}
"""

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · chatlead</title>
<style>{% include "admin.css" %}</style>
<script src="/admin/admin.js" defer></script></head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top"><div class="inner">
<a class="brand" href="/admin"><span class="mark" aria-hidden="true">✦</span>chatlead</a>
{% if not bare %}<nav aria-label="Admin"><ul>
{% for href, label in [("/admin", "Dashboard"), ("/admin/inbox", "Inbox"),
                       ("/admin/sessions", "Sessions"), ("/admin/deliveries", "Deliveries")] %}
<li><a href="{{ href }}"{% if section == href %} aria-current="page"{% endif %}>{{ label }}</a></li>
{% endfor %}
</ul></nav>{% endif %}
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
<div class="page-head"><div><h1>Dashboard</h1>
<p class="muted">{{ s.first_day }} to {{ s.last_day }} (UTC days){% if site_id %}
 · site <strong>{{ site_id }}</strong>{% else %} · all sites{% endif %}</p></div>
<form class="toolbar" method="get" action="/admin">
{% include "filters.html" %}
</form></div>

<section aria-labelledby="h-totals">
<h2 id="h-totals" class="sr-only">Totals</h2>
<div class="kpis">
{% for label, value in [("Sessions started", s.started), ("Completed", s.completed),
                        ("Abandoned", s.abandoned), ("Recovered", s.recovered),
                        ("Abandonment rate", s.abandonment_rate|percent)] %}
<div class="kpi"><div class="label">{{ label }}</div><div class="value">{{ value }}</div></div>
{% endfor %}
</div>
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

<section class="card flush" aria-labelledby="h-sites">
<div class="card-head"><h2 id="h-sites">Sites</h2></div>
<table class="stack"><caption class="sr-only">Totals per site for the period</caption>
<thead><tr><th scope="col">Site</th><th scope="col">Leads go to</th>
<th scope="col" class="num">Started</th><th scope="col" class="num">Completed</th>
<th scope="col" class="num">Abandoned</th><th scope="col" class="num">Recovered</th>
<th scope="col" class="num">Abandonment</th>
<th scope="col"><span class="sr-only">Check delivery</span></th></tr></thead>
<tbody>
{% for row in overall.sites %}
<tr><th scope="row" class="lead who">
<a href="/admin?site={{ row.site }}&amp;since={{ since }}">{{ row.site }}</a></th>
<td data-label="Leads go to">{{ targets[row.site] }}</td>
<td class="num" data-label="Started">{{ row.started }}</td>
<td class="num" data-label="Completed">{{ row.completed }}</td>
<td class="num" data-label="Abandoned">{{ row.abandoned }}</td>
<td class="num" data-label="Recovered">{{ row.recovered }}</td>
<td class="num" data-label="Abandonment">{{ row.abandonment_rate|percent }}</td>
<td class="num"><form class="inline" method="post" action="/admin/sites/{{ row.site }}/test-event">
{{ csrf_input }}
<button class="secondary small" type="submit">Send test event<span class="sr-only"> to
 {{ row.site }}</span></button></form></td></tr>
{% endfor %}
</tbody></table>
</section>

<section class="card flush" aria-labelledby="h-leads">
<div class="card-head">
<h2 id="h-leads">Abandoned leads{% if not first_page %} (older){% endif %}</h2>
<a class="button secondary small" href="{{ csv_url }}">Download CSV<span class="sr-only"> of all
 abandoned leads in this period</span></a></div>
{% if report.items %}
<table class="stack leads"><caption class="sr-only">Abandoned sessions, newest first</caption>
<thead><tr><th scope="col">Visitor</th>{% if show_site %}<th scope="col">Site</th>{% endif %}
<th scope="col">Phone</th><th scope="col">Stopped at</th><th scope="col">Abandoned</th>
<th scope="col">Status</th><th scope="col">Delivery</th></tr></thead>
<tbody>
{% for r in report.items %}
<tr>{% include "visitor_cell.html" %}
{% if show_site %}<td data-label="Site">{{ r.site }}</td>{% endif %}
<td class="nowrap" data-label="Phone">{{ r.phone or "—" }}</td>
<td data-label="Stopped at">{{ r.step }}</td>
<td class="nowrap" data-label="Abandoned">{{ r.abandoned_at|when }}</td>
<td data-label="Status"><span>{% if r.contactable %}<span class="badge yes">contactable</span>
{% else %}<span class="badge no">no contact</span>{% endif %}
{% if r.recovered %} <span class="badge recovered">recovered</span>{% endif %}</span></td>
<td data-label="Delivery"><span class="badge {{ r.delivery }}">{{ r.delivery }}</span></td></tr>
{% endfor %}
</tbody></table>
{% else %}
<p class="empty"><strong>No abandoned leads</strong>
Nobody left a chat unfinished in this period.</p>
{% endif %}
{% if older_url %}<div class="pager"><a class="button secondary small" href="{{ older_url }}">
Older leads →</a></div>{% endif %}
</section>
<p class="faint" data-zone>Times in UTC</p>
{% endblock %}"""

_FILTERS = """{% if sites|length > 1 %}<span class="field"><label for="f-site">Site</label>
<select id="f-site" name="site"><option value="">All sites</option>
{% for sid in sites %}<option value="{{ sid }}"{% if sid == site_id %} selected{% endif %}>{{ sid }}
</option>{% endfor %}</select></span>{% endif %}
<span class="field"><label for="f-since">Period</label>
<select id="f-since" name="since">
{% for value, label in periods %}<option value="{{ value }}"{% if value == since %} selected
{% endif %}>{{ label }}</option>{% endfor %}</select></span>
<button type="submit">Apply</button>"""

_VISITOR_CELL = """<td class="lead"><span class="who"><a href="/admin/sessions/{{ r.session_id }}">
{{ r.name or "Anonymous visitor" }}<span class="sr-only">, session {{ r.session_id }}</span>
</a></span><span class="sub">{{ r.email or "no email" }}{% if r.company %} · {{ r.company }}
{% endif %}</span></td>"""

_DELIVERY_ROWS = """<table class="stack"><caption class="sr-only">Delivery log, newest first
</caption>
<thead><tr><th scope="col">Event</th><th scope="col">Created</th><th scope="col">Site</th>
<th scope="col">Status</th><th scope="col" class="num">Attempts</th>
<th scope="col">Last result</th><th scope="col">Next attempt</th>
<th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody>
{% for d in items %}
<tr><td class="lead"><span class="who">{{ d.event }}</span>
<span class="sub">{% if d.event == "lead.test" %}test event{% else %}session
 <a href="/admin/sessions/{{ d.session_id }}">{{ d.session_id[:8] }}…</a>{% endif %}</span></td>
<td class="nowrap" data-label="Created">{{ d.created_at|when }}</td>
<td data-label="Site">{{ d.site }}</td>
<td data-label="Status"><span class="badge {{ d.status }}">{{ d.status }}</span></td>
<td class="num" data-label="Attempts">{{ d.attempts|length }}</td>
<td class="wrap" data-label="Last result">{% if d.attempts %}{{ d.attempts[-1]|outcome }}{% else %}—
{% endif %}</td>
<td class="nowrap" data-label="Next attempt">{{ d.next_attempt_at|when }}</td>
<td class="num">{% if d.status != "pending" %}<form class="inline" method="post"
 action="/admin/deliveries/{{ d.id }}/replay">{{ csrf_input }}
<input type="hidden" name="back" value="{{ back }}">
<button class="secondary small" type="submit">Replay<span class="sr-only"> {{ d.id }}</span>
</button></form>{% endif %}</td></tr>
{% endfor %}
</tbody></table>"""

_DELIVERIES = """{% extends "base.html" %}
{% block title %}Deliveries{% endblock %}
{% block main %}
<div class="page-head"><div><h1>Deliveries</h1>
<p class="muted">Every lead event and each attempt to deliver it. Delivered and dead events can be
 replayed.</p></div></div>
<section class="card flush" aria-labelledby="h-log">
<div class="card-head"><h2 id="h-log" class="sr-only">Delivery log</h2>
<nav aria-label="Filter by status"><ul class="tabs">
{% for value, label in [(none, "All"), ("pending", "Pending"), ("delivered", "Delivered"),
                        ("dead", "Dead")] %}
<li><a href="/admin/deliveries{% if value %}?status={{ value }}{% endif %}"
{% if value == shown %} aria-current="page"{% endif %}>{{ label }}</a></li>
{% endfor %}</ul></nav></div>
{% if items %}{% set back = path ~ ("?status=" ~ shown if shown else "") %}
{% include "delivery_rows.html" %}
{% else %}<p class="empty"><strong>No deliveries{% if shown %} with status {{ shown }}{% endif %}
</strong>Lead events appear here as visitors finish or leave a chat.</p>{% endif %}
{% if older_url %}<div class="pager"><a class="button secondary small" href="{{ older_url }}">
Older deliveries →</a></div>{% endif %}
</section>
<p class="faint" data-zone>Times in UTC</p>
{% endblock %}"""

_SESSION = """{% extends "base.html" %}
{% block title %}{{ s.fields.get("name") or "Session" }}{% endblock %}
{% block main %}
<div class="page-head"><div>
<p class="faint"><a href="/admin/sessions">← Sessions</a></p>
<h1>{{ s.fields.get("name") or "Anonymous visitor" }}</h1>
<p class="muted"><span class="badge {{ s.status }}">{{ s.status }}</span>{% if s.recovered %}
 <span class="badge recovered">recovered</span>{% endif %} · {{ s.site }} · session
 <code>{{ s.id }}</code></p></div></div>
<div class="charts">
<section class="card" aria-labelledby="h-fields"><h2 id="h-fields">Captured fields</h2>
{% if s.fields %}<dl class="facts">{% for name, value in s.fields.items() %}<dt>{{ name }}</dt>
<dd>{{ value }}</dd>{% endfor %}</dl>{% else %}<p class="muted">Nothing captured yet.</p>{% endif %}
</section>
<section class="card" aria-labelledby="h-facts"><h2 id="h-facts">Session</h2>
<dl class="facts">
<dt>Started</dt><dd>{{ s.created_at|when }}</dd>
<dt>Last activity</dt><dd>{{ s.last_activity_at|when }}</dd>
{% if s.abandoned_at %}<dt>Abandoned</dt><dd>{{ s.abandoned_at|when }}</dd>{% endif %}
{% if s.completed_at %}<dt>Completed</dt><dd>{{ s.completed_at|when }}</dd>{% endif %}
<dt>Flow step</dt><dd>{{ s.step or "—" }}</dd>
<dt>Visitor id</dt><dd>{{ s.user_id or "—" }}</dd>
{% for name, value in s.page.items() %}<dt>{{ name }}</dt><dd>{{ value }}</dd>{% endfor %}
</dl></section>
</div>
<section class="card" aria-labelledby="h-transcript"><h2 id="h-transcript">Conversation</h2>
<ol class="transcript">
{% for m in s.transcript %}<li class="{{ m.sender }}"><div class="meta">{{ m.sender }} ·
 {{ m.ts|when }}{% if m.field %} · {{ m.field }}{% endif %}</div>
<div class="text">{{ m.text }}</div></li>{% endfor %}
</ol></section>
<section class="card flush" aria-labelledby="h-deliveries">
<div class="card-head"><h2 id="h-deliveries">Deliveries</h2></div>
{% set items = s.deliveries %}{% set back = path %}
{% if items %}{% include "delivery_rows.html" %}
{% else %}<p class="empty">No lead events for this session yet.</p>{% endif %}
</section>
<section class="card danger-zone" aria-labelledby="h-erase">
<h2 id="h-erase">Erase personal data</h2>
<p class="muted">Deletes the transcript, fields and page data of this session everywhere chatlead
 stores them (session, outbox, inbox, reports). Anonymous counters stay. This cannot be undone.</p>
<form method="post" action="/admin/sessions/{{ s.id }}/erase">{{ csrf_input }}
<p><input type="checkbox" id="confirm" name="confirm" value="yes" required>
<label for="confirm">I want to erase this session's personal data</label></p>
<button class="danger" type="submit">Erase session</button></form>
</section>
<p class="faint" data-zone>Times in UTC</p>
{% endblock %}"""

_SESSIONS = """{% extends "base.html" %}
{% block title %}Sessions{% endblock %}
{% block main %}
<div class="page-head"><div><h1>Sessions</h1>
<p class="muted">Every chat of the {{ period_label|lower }}, newest first: open ones are live
 now.</p></div>
<form class="toolbar" method="get" action="/admin/sessions">
{% if shown %}<input type="hidden" name="status" value="{{ shown }}">{% endif %}
{% include "filters.html" %}
</form></div>
<section class="card flush" aria-labelledby="h-sessions">
<div class="card-head"><h2 id="h-sessions" class="sr-only">Session list</h2>
<nav aria-label="Filter by status"><ul class="tabs">
{% for value, label in [(none, "All"), ("open", "Open"), ("completed", "Completed"),
                        ("abandoned", "Abandoned")] %}
<li><a href="{{ tab_url(value) }}"{% if value == shown %} aria-current="page"{% endif %}>
{{ label }}</a></li>
{% endfor %}</ul></nav></div>
{% if items %}
<table class="stack"><caption class="sr-only">Sessions, newest first</caption>
<thead><tr><th scope="col">Visitor</th>{% if show_site %}<th scope="col">Site</th>{% endif %}
<th scope="col">Status</th><th scope="col">Phone</th><th scope="col">Step</th>
<th scope="col">Started</th><th scope="col">Last activity</th></tr></thead>
<tbody>
{% for r in items %}
<tr>{% include "visitor_cell.html" %}
{% if show_site %}<td data-label="Site">{{ r.site }}</td>{% endif %}
<td data-label="Status"><span><span class="badge {{ r.status }}">{{ r.status }}</span>
{% if r.recovered %} <span class="badge recovered">recovered</span>{% endif %}</span></td>
<td class="nowrap" data-label="Phone">{{ r.phone or "—" }}</td>
<td data-label="Step">{{ r.step or "—" }}</td>
<td class="nowrap" data-label="Started">{{ r.started_at|when }}</td>
<td class="nowrap" data-label="Last activity">{{ r.last_activity_at|when }}</td></tr>
{% endfor %}
</tbody></table>
{% else %}<p class="empty"><strong>No {{ shown or "" }} sessions</strong>Chats show up here as
 soon as a visitor opens the widget.</p>{% endif %}
{% if older_url %}<div class="pager"><a class="button secondary small" href="{{ older_url }}">
Older sessions →</a></div>{% endif %}
</section>
<p class="faint" data-zone>Times in UTC</p>
{% endblock %}"""

_INBOX = """{% extends "base.html" %}
{% block title %}Inbox{% endblock %}
{% block main %}
<div class="page-head"><div><h1>Inbox</h1>
<p class="muted">Leads of sites without a webhook land here, newest first. Mark a lead handled
 once you have followed it up.</p></div></div>
<section class="card flush" aria-labelledby="h-inbox">
<div class="card-head"><h2 id="h-inbox" class="sr-only">Inbox leads</h2>
<nav aria-label="Filter by status"><ul class="tabs">
{% for value, label in [(none, "All"), ("new", "New"), ("handled", "Handled")] %}
<li><a href="{{ tab_url(status=value) }}"{% if value == query.status and query.kind != "tests" %}
 aria-current="page"{% endif %}>{{ label }}</a></li>
{% endfor %}
<li><a href="{{ tab_url(kind='tests', status=none) }}"{% if query.kind == "tests" %}
 aria-current="page"{% endif %}>Test events</a></li>
</ul></nav>
<form class="search" method="get" action="/admin/inbox" role="search">
{% if query.status %}<input type="hidden" name="status" value="{{ query.status }}">{% endif %}
{% if query.kind != "leads" %}<input type="hidden" name="kind" value="{{ query.kind }}">{% endif %}
<label for="q" class="sr-only">Search leads</label>
<input type="search" id="q" name="q" value="{{ query.search }}" maxlength="100"
 placeholder="Search leads">
<button class="secondary" type="submit">Search</button></form></div>
{% if items %}
<table class="stack"><caption class="sr-only">Leads in the inbox, newest first</caption>
<thead><tr><th scope="col">Lead</th><th scope="col">What they need</th><th scope="col">Phone</th>
{% if show_site %}<th scope="col">Site</th>{% endif %}<th scope="col">Last message</th>
<th scope="col">Status</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody>
{% for item in items %}
<tr><td class="lead"><span class="who">{% if item.session_id %}
<a href="/admin/sessions/{{ item.session_id }}">{{ item.name or "Anonymous visitor" }}</a>
{% else %}{{ item.name or "Anonymous visitor" }}{% endif %}</span>
<span class="sub">{{ item.email or "no email" }}{% if item.company %} · {{ item.company }}
{% endif %}</span></td>
<td class="wide" data-label="What they need"><span class="need">{{ item.need or "—" }}</span></td>
<td class="nowrap" data-label="Phone">{{ item.phone or "—" }}</td>
{% if show_site %}<td data-label="Site">{{ item.site }}</td>{% endif %}
<td class="nowrap" data-label="Last message">{{ item.last_message_at|when }}</td>
<td data-label="Status"><span><span class="badge {{ item.status }}">{{ item.status }}</span>
{% if item.test %} <span class="badge test">test</span>{% elif item.event == "abandoned" %}
 <span class="badge abandoned">left early</span>{% endif %}</span></td>
<td class="num"><form class="inline" method="post" action="/admin/inbox/{{ item.id }}/handled">
{{ csrf_input }}<input type="hidden" name="back" value="{{ back }}">
{% if item.status == "new" %}<input type="hidden" name="status" value="handled">
<button class="secondary small" type="submit">Mark handled<span class="sr-only">:
 {{ item.name or item.id }}</span></button>
{% else %}<input type="hidden" name="status" value="new">
<button class="secondary small" type="submit">Mark new<span class="sr-only">:
 {{ item.name or item.id }}</span></button>{% endif %}</form></td></tr>
{% endfor %}
</tbody></table>
{% else %}<p class="empty"><strong>{% if query.search %}No leads match “{{ query.search }}”
{% elif query.kind == "tests" %}No test events{% elif query.status %}No {{ query.status }} leads
{% else %}The inbox is empty{% endif %}</strong>{% if query.kind == "tests" %}“Send test event” on
 the dashboard puts one here.{% else %}Finished chats appear here within seconds.{% endif %}</p>
{% endif %}
{% if older_url %}<div class="pager"><a class="button secondary small" href="{{ older_url }}">
Older leads →</a></div>{% endif %}
</section>
<p class="faint" data-zone>Times in UTC</p>
{% endblock %}"""

_LOGIN = """{% extends "base.html" %}
{% block title %}Sign in{% endblock %}
{% block main %}
<div class="card login">
<h1>Sign in</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if token_mode %}
<p class="muted">Enter the admin token (<code>CHATLEAD_ADMIN_TOKEN</code>).</p>
<form method="post" action="/admin/login">{{ csrf_input }}
<input type="hidden" name="next" value="{{ next }}">
<label for="token">Admin token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{% else %}
<p class="muted">Open the sign-in link <code>chatlead serve</code> printed when it started,
or get a new one with <code>chatlead admin-url</code>.</p>
{% endif %}
</div>
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
    "visitor_cell.html": _VISITOR_CELL,
    "filters.html": _FILTERS,
    "dashboard.html": _DASHBOARD,
    "deliveries.html": _DELIVERIES,
    "session.html": _SESSION,
    "sessions.html": _SESSIONS,
    "inbox.html": _INBOX,
    "login.html": _LOGIN,
    "error.html": _ERROR,
}


def environment() -> Environment:
    """The admin's Jinja2 environment (autoescaping on, undefined names fail)."""
    env = Environment(
        loader=DictLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Any] = {"when": local_time, "percent": percent, "outcome": outcome}
    env.filters.update(filters)
    return env
