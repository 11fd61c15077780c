"""``/u/<token>``: the one-click unsubscribe link of reminder emails (CONTRACT §11).

``GET`` shows a confirm page with a button and changes nothing (mail scanners follow
links). ``POST`` -- the button, or a mail client's RFC 8058 one-click request with the
body ``List-Unsubscribe=One-Click``, urlencoded or multipart; the body is read (capped)
but not needed -- suppresses the address for the token's site. No CSRF check by design:
the token is the authority, and a mail client posts from no page of ours. A malformed or
forged token is a ``400`` page that says nothing about any site or address.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from .errors import StoreError
from .unsubscribe import Target, Unsubscribe

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["routes"]

log = logging.getLogger("chatlead.unsubscribe")

BODY_LIMIT = 4096
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{html.escape(title)}</title>'
        "<style>body{margin:0;font:17px/1.6 system-ui,sans-serif;color:#14212b}"
        "main{max-width:36em;margin:0 auto;padding:64px 20px}"
        "button{font:inherit;padding:10px 18px;border:0;border-radius:6px;"
        "background:#2563eb;color:#fff;cursor:pointer}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=_HEADERS)


def _bad() -> HTMLResponse:
    return _page("This link is not valid", "<p>Nothing was changed.</p>", 400)


def _who(runtime: Runtime, target: Target) -> str:
    site = runtime.sites.get(target.site)
    return (site.company if site is not None else None) or target.site


async def _target(request: Request) -> Target | None:
    runtime: Runtime = request.app.state.runtime
    return await Unsubscribe(runtime.store.redis).check(request.path_params["token"])


async def confirm(request: Request) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    try:
        target = await _target(request)
    except StoreError:
        return _page("Try again later", "<p>Nothing was changed.</p>", 503)
    if target is None:
        return _bad()
    who = html.escape(_who(runtime, target))
    return _page(
        "Stop reminders?",
        f"<p>{who} will send no more reminder emails to this address.</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        "<button type=submit>Unsubscribe</button></form>",
    )


async def unsubscribe(request: Request) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    read = 0
    async for chunk in request.stream():  # the body says nothing the token does not
        read += len(chunk)
        if read > BODY_LIMIT:
            return _page("Request too large", "<p>Nothing was changed.</p>", 413)
    try:
        target = await _target(request)
        if target is None:
            return _bad()
        await Unsubscribe(runtime.store.redis).suppress(target.site, target.address_hash)
    except StoreError:
        return _page("Try again later", "<p>Nothing was changed.</p>", 503)
    log.info("unsubscribed site=%s", target.site)
    who = html.escape(_who(runtime, target))
    return _page("You are unsubscribed", f"<p>{who} will send you no more reminders.</p>")


routes: list[BaseRoute] = [
    Route("/u/{token}", confirm, methods=["GET"]),
    Route("/u/{token}", unsubscribe, methods=["POST"]),
]
