"""How the admin pages are rendered: templates, stylesheet, script, errors and guard.

Pages are server-rendered from ``templates/*.html`` (Jinja2, autoescaping on, so
every value from a visitor is escaped) and work without script. The stylesheet
(``/admin/admin.css``) and the one small script (``/admin/admin.js``, allowed by
the pages' ``script-src 'self'``) are files in ``static/``, served by
:func:`asset`; the script only rewrites each ``<time datetime="…Z">`` from UTC into
the browser's local time; exports, CSV and the API stay in UTC. The live console
(:mod:`.routes_live`) alone adds ``live.css``, ``live_view.js`` and ``live.js``, the
one page that needs script, and may open a socket (:data:`LIVE_CSP`). Tables are
stacked into labelled cards below 720 px, so no page scrolls sideways on a phone.

Templates and static files are read once, at import, with :mod:`importlib.resources`,
so an installed wheel serves them from wherever it lives.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..errors import StoreError
from .access import Endpoint, csrf_token, finish, guard, runtime_of
from .auth import COOKIE, CSRF_FIELD
from .deliveries import DeliveryAttempt
from .health import ago
from .params import QueryError, iso_ms

__all__ = [
    "CSP",
    "LIVE_CSP",
    "LIVE_SCRIPT",
    "LIVE_VIEW_SCRIPT",
    "LIVE_STYLESHEET",
    "STYLESHEET",
    "SCRIPT",
    "UNAVAILABLE",
    "Asset",
    "back_to",
    "environment",
    "local_time",
    "outcome",
    "page",
    "percent",
    "redirect",
    "relative_time",
    "refuse",
    "render",
    "section",
    "with_notice",
]

log = logging.getLogger("chatlead.admin")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""``style-src 'unsafe-inline'`` is for the charts: pygal's SVG carries its own style."""
LIVE_CSP = CSP.replace("default-src 'none';", "default-src 'none'; connect-src 'self';")
"""The live console's policy: :data:`CSP` plus ``connect-src 'self'`` for its socket to
``/agent`` (CSP 3 lets ``'self'`` match ``ws:``/``wss:`` on the page's own host). Only
that page may connect anywhere; every other page keeps ``default-src 'none'``."""
_FILES = resources.files(__package__ or "chatlead.admin")


@dataclass(frozen=True)
class Asset:
    """A static file of the admin pages, with its ETag (it holds no data: no guard)."""

    text: str
    media_type: str

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.text.encode()).hexdigest()[:16] + '"'

    async def serve(self, request: Request) -> Response:
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers={"etag": self.etag})
        headers = {
            "etag": self.etag,
            "cache-control": "public, max-age=300",
            "x-content-type-options": "nosniff",
        }
        return Response(self.text, media_type=self.media_type, headers=headers)


STYLESHEET = Asset((_FILES / "static" / "admin.css").read_text("utf-8"), "text/css")
SCRIPT = Asset((_FILES / "static" / "admin.js").read_text("utf-8"), "text/javascript")
LIVE_STYLESHEET = Asset((_FILES / "static" / "live.css").read_text("utf-8"), "text/css")
LIVE_SCRIPT = Asset((_FILES / "static" / "live.js").read_text("utf-8"), "text/javascript")
LIVE_VIEW_SCRIPT = Asset((_FILES / "static" / "live_view.js").read_text("utf-8"), "text/javascript")
TEMPLATES = {
    item.name: item.read_text("utf-8")
    for item in (_FILES / "templates").iterdir()
    if item.name.endswith(".html")
}


def local_time(iso: str | None) -> Markup:
    """``<time datetime="…">2024-05-01 09:30 UTC</time>``, or a dash for no time."""
    if not iso:
        return Markup(_PARTS.no_time())
    try:
        shown = datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return escape(iso)
    return Markup(_PARTS.time(iso, shown))


def relative_time(ms: int | None, now_ms: int) -> Markup:
    """``<time datetime="…" data-ago>3 min ago</time>`` (the script adds the local time as
    its title), or ``never``."""
    if ms is None:
        return escape(ago(None, now_ms))
    return Markup(_PARTS.ago(iso_ms(ms), ago(ms, now_ms)))


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


def duration(seconds: float) -> str:
    """A wait in the unit that reads best: ``45 s``, ``12 min``, ``3.5 h``, ``2.1 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def environment() -> Environment:
    """The admin's Jinja2 environment (autoescaping on, undefined names fail)."""
    env = Environment(
        loader=DictLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Any] = {
        "when": local_time,
        "ago": relative_time,
        "percent": percent,
        "duration": duration,
        "outcome": outcome,
    }
    env.filters.update(filters)
    return env


_env = environment()
_PARTS: Any = _env.get_template("parts.html").module
"""The macros of ``templates/parts.html``: the HTML the filters and pages share."""


NOTICES = {
    "replayed": "The event was queued for delivery again.",
    "pending": "That event is already waiting for delivery.",
    "missing": "That event no longer exists.",
    "test_sent": "A test event was queued; it appears below once delivered.",
    "erased": "The session's personal data was erased.",
    "logged_out": "You are signed out.",
    "handled": "Marked handled.",
    "reopened": "Marked new again.",
    "released": "Released: the lead is on its way to the site's destinations.",
}
SECTIONS = (
    "/admin/inbox",
    "/admin/live",
    "/admin/sessions",
    "/admin/recovery",
    "/admin/deliveries",
)
"""Admin paths whose subpages light up their nav entry (the dashboard is ``/admin``)."""


def section(path: str) -> str:
    """The nav entry a path belongs to."""
    return next((s for s in SECTIONS if path == s or path.startswith(s + "/")), "/admin")


def render(
    request: Request, name: str, status: int = 200, *, csp: str = CSP, **context: Any
) -> Response:
    """Template ``name`` as an HTML page with the admin's headers (and CSRF cookie);
    ``csp`` is its Content-Security-Policy (:data:`CSP` unless a page needs more)."""
    runtime = runtime_of(request)
    html = _env.get_template(name).render(
        csrf_input=_PARTS.csrf_input(CSRF_FIELD, csrf_token(request)),
        signed_in=request.cookies.get(COOKIE) is not None,
        token_mode=bool(runtime.settings.admin_token),
        notice=NOTICES.get(request.query_params.get("notice", "")),
        path=request.url.path,
        section=section(request.url.path),
        **{"bare": name == "login.html", **context},
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["content-security-policy"] = csp
    return finish(request, response)


TITLES = {429: "Too many attempts", 503: "Unavailable"}
UNAVAILABLE = "Redis is unavailable; try again shortly."


def refuse(request: Request, status: int, reason: str) -> Response:
    if status == 401:
        query = request.url.query
        here = request.url.path + (f"?{query}" if query else "")
        return render(request, "login.html", 401, error=None, next=here)
    title = TITLES.get(status, "Not allowed")
    return render(request, "error.html", status, title=title, message=reason)


def page(fn: Endpoint) -> Endpoint:
    """Admin-only; bad queries as a 400 page, Redis outages as a 503 page."""
    guarded = guard(refuse)(fn)

    async def run(request: Request) -> Response:
        try:
            return await guarded(request)
        except QueryError as exc:
            status = 404 if exc.param == "site" else 400
            return render(request, "error.html", status, title="Bad request", message=str(exc))
        except StoreError as exc:
            log.warning("admin_store_unavailable error=%s", exc)
            return render(request, "error.html", 503, title="Unavailable", message=UNAVAILABLE)

    run.__name__ = fn.__name__
    return run


def back_to(form: dict[str, str], default: str) -> str:
    """A same-site admin path to return to (never an open redirect)."""
    back = form.get("back", "")
    if back.startswith("/admin") and not back.startswith("//") and "\\" not in back:
        return back
    return default


def with_notice(url: str, notice: str) -> str:
    path, _, query = url.partition("?")
    params = {k: v for k, v in parse_qsl(query) if k != "notice"}
    return f"{path}?{urlencode({**params, 'notice': notice})}"


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)
