"""HTTP routes for the embeddable widget and the demo page (CONTRACT §7).

``/widget/chatlead.js`` is the embed URL site owners paste: cached briefly and
revalidated with a strong ETag. ``/widget/chatlead.<hash>.js`` names one exact
build (``hash`` = first 10 hex digits of the file's SHA-256) and is cached for a
year. ``/demo`` is a sample landing page with the widget embedded.

``chatlead.js`` is only the loader (CONTRACT §13): it draws the launcher and fetches the
chat UI, ``/widget/chatlead-ui.<hash>.js``, on first use. The UI's name is written into
the loader by the build (``widget_src/build.mjs``), so the UI is immutable and cached for
a year. A request for an older UI name (a loader cached before a deploy) is redirected
to the current one, uncached: loader and UI meet through one small, stable interface.

The files under ``widget_static/`` are read once, at import, and served from
memory (with a pre-compressed gzip copy).

The app includes these with ``Mount("", routes=widget.routes)`` or
``Router(routes=[*widget.routes, ...])``. ``/demo`` embeds the widget for the
site named by ``?site=``, else ``request.app.state.default_site_id``, else
``"default"``.

``/demo`` sends a Content-Security-Policy that allows exactly what the page does:
scripts from this origin plus the page's one inline script (by its hash, computed
from ``demo.html`` at import, so it cannot drift), a WebSocket to this host
(``connect-src 'self'`` covers ``ws:``/``wss:`` of the same host, CSP Level 3),
and no framing. Styles may be inline: the widget styles its shadow root with a
``<style>`` element it builds at run time.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .sites import Site

__all__ = [
    "SCRIPT",
    "UI",
    "UI_NAME",
    "chat_page",
    "demo_csp",
    "demo_page",
    "routes",
    "versioned_path",
]


def _static_dir() -> Path:
    """``widget_static/``: shipped inside the installed package, beside it in a checkout
    (``python -m server`` there)."""
    installed = Path(__file__).resolve().parent / "widget_static"
    return installed if installed.is_dir() else installed.parent.parent / "widget_static"


STATIC_DIR = _static_dir()
JS_TYPE = "text/javascript; charset=utf-8"
SHORT_CACHE = "public, max-age=300"
LONG_CACHE = "public, max-age=31536000, immutable"
_SITE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
_UI_NAME = re.compile(r"^chatlead-ui\.[A-Za-z0-9_-]{6,}\.js$")


@dataclass(frozen=True)
class StaticScript:
    """One script held in memory: raw and gzip bodies, content hash, ETags."""

    body: bytes
    gzipped: bytes
    digest: str

    @classmethod
    def read(cls, path: Path) -> StaticScript:
        return cls.of(path.read_bytes())

    @classmethod
    def of(cls, body: bytes) -> StaticScript:
        return cls(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            digest=hashlib.sha256(body).hexdigest(),
        )

    @property
    def version(self) -> str:
        return self.digest[:10]

    def etag(self, gzipped: bool) -> str:
        # Strong validators differ per representation (RFC 9110 §8.8.3).
        return f'"{self.digest[:32]}{"-gz" if gzipped else ""}"'

    def response(self, request: Request, cache_control: str) -> Response:
        gzipped = "gzip" in request.headers.get("accept-encoding", "").lower()
        etag = self.etag(gzipped)
        headers = {
            "Cache-Control": cache_control,
            "ETag": etag,
            "Vary": "Accept-Encoding",
        }
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        body = self.gzipped if gzipped else self.body
        return Response(body, headers=headers, media_type=JS_TYPE)


def _etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` uses the weak comparison (RFC 9110 §13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = (tag.strip().removeprefix("W/") for tag in header.split(","))
    return etag in tags


def _ui_name() -> str:
    """The one built UI file beside the loader (the build removes older ones)."""
    names = sorted(p.name for p in STATIC_DIR.glob("chatlead-ui.*.js") if _UI_NAME.match(p.name))
    if len(names) != 1:
        raise RuntimeError(f"expected one chatlead-ui.<hash>.js in {STATIC_DIR}, found {names}")
    return names[0]


SCRIPT = StaticScript.read(STATIC_DIR / "chatlead.js")
UI_NAME = _ui_name()
UI = StaticScript.read(STATIC_DIR / UI_NAME)
_DEMO_TEMPLATE = (STATIC_DIR / "demo.html").read_text(encoding="utf-8")
_TRIGGERS_CHUNK = (STATIC_DIR / "chatlead-triggers.js").read_text(encoding="utf-8")
_TRIGGERS_SLOT = "__CHATLEAD_TRIGGERS__"
_NO_TRIGGERS = StaticScript.of(b"")


def demo_csp(page: str) -> str:
    """The Content-Security-Policy for ``page``: its inline scripts allowed by hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(page)
    )
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' {hashes}".rstrip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


_DEMO_CSP = demo_csp(_DEMO_TEMPLATE)
_CHAT_TEMPLATE = (STATIC_DIR / "resume.html").read_text(encoding="utf-8")
_CHAT_CSP = demo_csp(_CHAT_TEMPLATE)


def versioned_path() -> str:
    """The year-cacheable URL path of the current widget build."""
    return f"/widget/chatlead.{SCRIPT.version}.js"


def demo_page(site_id: str) -> HTMLResponse:
    """The demo landing page with the widget embedded for ``site_id``.

    Raises:
        ValueError: ``site_id`` is not a valid site id.
    """
    if not _SITE_ID.match(site_id):
        raise ValueError(f"not a site id: {site_id!r}")
    page = _DEMO_TEMPLATE.replace("{{WIDGET_SRC}}", versioned_path()).replace(
        "{{SITE}}", html.escape(site_id)
    )
    return HTMLResponse(
        page, headers={"Cache-Control": "no-cache", "Content-Security-Policy": _DEMO_CSP}
    )


def chat_page(site_id: str, title: str) -> HTMLResponse:
    """A bare page with the widget for ``site_id``: where a resume link lands when the
    session's own page may not be used (CONTRACT §11). Never cached, never indexed,
    and it sends no ``Referer`` (its address holds the link's token).

    Raises:
        ValueError: ``site_id`` is not a valid site id.
    """
    if not _SITE_ID.match(site_id):
        raise ValueError(f"not a site id: {site_id!r}")
    page = (
        _CHAT_TEMPLATE.replace("{{WIDGET_SRC}}", versioned_path())
        .replace("{{SITE}}", html.escape(site_id))
        .replace("{{TITLE}}", html.escape(title))
    )
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": _CHAT_CSP,
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex",
    }
    return HTMLResponse(page, headers=headers)


async def widget_script(request: Request) -> Response:
    return SCRIPT.response(request, SHORT_CACHE)


async def versioned_script(request: Request) -> Response:
    if request.path_params["version"] != SCRIPT.version:
        return Response("unknown widget version\n", status_code=404, media_type="text/plain")
    return SCRIPT.response(request, LONG_CACHE)


async def ui_script(request: Request) -> Response:
    if f"chatlead-ui.{request.path_params['build']}.js" == UI_NAME:
        return UI.response(request, LONG_CACHE)
    if not _UI_NAME.match(f"chatlead-ui.{request.path_params['build']}.js"):
        return Response("unknown widget build\n", status_code=404, media_type="text/plain")
    return RedirectResponse(UI_NAME, status_code=302, headers={"Cache-Control": "no-cache"})


def triggers_script(site: Site | None) -> StaticScript:
    """``/widget/triggers/<site>.js``: the proactive openers of ``site`` with its triggers
    written in (CONTRACT §13), or an empty script for a site without any (or unknown)."""
    if site is None or not site.triggers:
        return _NO_TRIGGERS
    # ASCII-only JSON is a JavaScript expression as it stands (no U+2028 surprises)
    rules = [
        t.model_dump(exclude_none=True)
        | {
            "texts": {
                lang: w.triggers[t.id] for lang, w in site.texts.items() if t.id in w.triggers
            }
        }
        for t in site.triggers
    ]
    return _with_triggers(json.dumps(rules, ensure_ascii=True))


@functools.lru_cache(maxsize=256)
def _with_triggers(rules: str) -> StaticScript:
    return StaticScript.of(_TRIGGERS_CHUNK.replace(_TRIGGERS_SLOT, rules).encode())


async def site_triggers(request: Request) -> Response:
    site = request.app.state.runtime.sites.get(request.path_params["site"])
    return triggers_script(site).response(request, SHORT_CACHE)


async def demo(request: Request) -> Response:
    site_id = request.query_params.get("site") or getattr(
        request.app.state, "default_site_id", None
    )
    site_id = site_id or "default"
    if not _SITE_ID.match(site_id):
        return Response("bad site id\n", status_code=400, media_type="text/plain")
    return demo_page(site_id)


async def home(request: Request) -> Response:
    """The server's root has nothing of its own: a new user lands on the demo."""
    return RedirectResponse("demo", status_code=302)  # relative: right behind a path prefix


routes: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/widget/chatlead.js", widget_script, methods=["GET"]),
    Route("/widget/chatlead.{version}.js", versioned_script, methods=["GET"]),
    Route("/widget/chatlead-ui.{build}.js", ui_script, methods=["GET"]),
    Route("/widget/triggers/{site}.js", site_triggers, methods=["GET"]),
    Route("/demo", demo, methods=["GET"]),
]
