"""``/r/<token>``: where a resume link leads (CONTRACT §11).

A live link answers ``302`` to the page the chat was on, with the token in its fragment
(``#chatlead-resume=<token>``: the widget there reads it and resumes), but only when
that page's origin is one the site names explicitly; otherwise to ``/r/<token>/chat``,
a page of our own with the widget. A dead link -- malformed, forged, of a key rotated
out, expired, or whose session is gone (expired or erased) -- is a ``410`` page with the
site's name when it is known, and nothing else.

The link in reminder step n carries ``?s=<n>``: a return through it is credited to
``reminder:<n>`` (``recovered_by``).

The fragment carries the same token: fragments never reach a server or a ``Referer``,
and the widget removes it from the address bar at once.
"""

from __future__ import annotations

import contextlib
import html
import logging
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import widget
from .errors import StoreError
from .resume_links import FRAGMENT, fragment_url, redirect_target

if TYPE_CHECKING:
    from .runtime import Runtime
    from .session import SessionRecord
    from .sites import Site

__all__ = ["gone_page", "routes"]

log = logging.getLogger("chatlead.resume")

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}
REMINDER_STEPS = ("1", "2", "3")
"""``?s=<n>`` on the link in reminder step n (the return is credited to it)."""
_GONE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"


def gone_page(site_name: str | None) -> HTMLResponse:
    """The ``410`` page of a dead link: the site's name when known, no data."""
    who = html.escape(site_name) if site_name else "This chat"
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><title>Link expired</title>'
        "<style>body{margin:0;font:17px/1.6 system-ui,sans-serif;color:#14212b}"
        "main{max-width:36em;margin:0 auto;padding:64px 20px}</style></head><body><main>"
        f"<h1>This link has expired</h1><p>{who}: the link to continue this chat is no "
        "longer valid. Start a new chat on the website.</p></main></body></html>"
    )
    headers = {**_HEADERS, "Content-Security-Policy": _GONE_CSP}
    return HTMLResponse(body, status_code=410, headers=headers)


def _name(site: Site) -> str:
    return site.company or site.id


async def _live(request: Request) -> tuple[SessionRecord, Site] | Response:
    """The session a live link names and its site, or the response for a dead one."""
    runtime: Runtime = request.app.state.runtime
    try:
        link = await runtime.links.authentic(request.path_params["token"])
        record = await runtime.store.load_session(link.session_id) if link else None
    except StoreError as exc:
        log.warning("resume_link_unavailable error=%s", exc)
        return Response("unavailable, try again shortly\n", 503, media_type="text/plain")
    site = runtime.sites.get(record.site) if record is not None else None
    if link is None or record is None or site is None:
        return gone_page(None)
    if link.expires_s <= time.time():
        return gone_page(_name(site))
    return record, site


async def resume_link(request: Request) -> Response:
    found = await _live(request)
    if isinstance(found, Response):
        return found
    record, site = found
    token = request.path_params["token"]
    step = request.query_params.get("s", "")
    if step in REMINDER_STEPS and record.status.value == "abandoned":
        runtime: Runtime = request.app.state.runtime
        with contextlib.suppress(StoreError):  # attribution only: the link still works
            await runtime.links.note_step(record.id, int(step))
    page = redirect_target(record.page.get("page_url"), site.allowed_origins)
    if page is not None:
        return RedirectResponse(fragment_url(page, token), 302, headers=_HEADERS)
    # relative: right behind a path prefix; the fragment survives the redirect
    return RedirectResponse(f"{token}/chat#{FRAGMENT}{token}", 302, headers=_HEADERS)


async def resume_chat(request: Request) -> Response:
    found = await _live(request)
    if isinstance(found, Response):
        return found
    _, site = found
    return widget.chat_page(site.id, _name(site))


routes: list[BaseRoute] = [
    Route("/r/{token}", resume_link, methods=["GET"]),
    Route("/r/{token}/chat", resume_chat, methods=["GET"]),
]
