"""Real parts for the widget's browser tests: the chat server, a site owner's server, Chromium.

Headless Chromium (Debian's ``/usr/bin/chromium``) drives ``/demo`` and host pages
served from another origin; ``python -m server serve`` runs as a subprocess (on Redis
db ``CHATLEAD_WIDGET_TEST_DB``, default 11, of the local Redis, else on the run's
embedded server) and delivers leads to a local webhook receiver. Screenshots go to
``tests/artifacts/``. Test modules bind the fixtures they use to module names.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
axe_module = pytest.importorskip("axe_playwright_python.sync_playwright")

import redis  # noqa: E402

from tests.conftest import ServerProcess, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_REDIS = "redis://127.0.0.1:6379/"
# this module's own database on a shared local Redis
WIDGET_DB = int(os.environ.get("CHATLEAD_WIDGET_TEST_DB", "11"))
SITE = "acme"
SITE_TOML = """
[sites.acme]
company = "Brightwater Plumbing"
greeting = "Hi! I can get you a quote in a minute."
phone_region = "US"

[sites.acme.webhook]
url = "{hook}"

[[sites.acme.flow]]
field = "name"
ask = "What's your name?"
required = true

[[sites.acme.flow]]
field = "email"
ask = "What's the best email to reach you?"
required = true

[[sites.acme.flow]]
field = "phone"
ask = "And a phone number? (optional)"

[[sites.acme.flow]]
field = "service"
kind = "choice"
options = ["Leak", {{ label = "Drain", value = "drain", score = 10 }}, "Water heater"]
ask = "What do you need help with?"

[[sites.acme.flow]]
field = "message"
ask = "Anything else we should know?"

[sites.acme.texts.ar]
greeting = "مرحبًا! يمكنني تجهيز عرض سعر لك خلال دقيقة."

[sites.acme.texts.ar.asks]
name = "ما اسمك؟"
email = "ما أفضل بريد إلكتروني للتواصل معك؟"
phone = "ورقم هاتف؟ (اختياري)"
service = "بماذا يمكننا مساعدتك؟"
message = "هل هناك شيء آخر يجب أن نعرفه؟"

[sites.acme.texts.ar.options.service]
Leak = "تسرّب"
drain = "انسداد الصرف"
"Water heater" = "سخان الماء"
"""

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)


# --- real parts -------------------------------------------------------------


class _BurstServer(ThreadingHTTPServer):
    # http.server listens with a backlog of 5; a burst of new connections (the
    # delivery loop opens many at once) would wait seconds on SYN retransmits
    request_queue_size = 128


class LeadReceiver:
    """A site owner's server on its own origin (127.0.0.1, another port).

    It records every webhook body POSTed to it and serves host pages (GET) that
    embed the widget cross-origin. Loopback on both sides keeps Chromium's
    local-network-access checks out of the way.
    """

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.pages: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers per page
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                page = received.pages.get(self.path)
                self.send_response(200 if page else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page or b"")))
                for name, value in received.headers.get(self.path, {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(page or b"")

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with received.lock:
                    received.bodies.append(body)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = _BurstServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.http.server_port}"
        self.url = self.origin + "/hook"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def leads_of(self, session_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.bodies if b.get("data", {}).get("sessionId") == session_id]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(5)


def poll(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def lead_receiver() -> Iterator[LeadReceiver]:
    receiver = LeadReceiver()
    yield receiver
    receiver.close()


@contextlib.contextmanager
def site_server(
    redis_url: str, config_dir: Path, toml: str, port: int | None = None, **env: str
) -> Iterator[ServerProcess]:
    """``chatlead serve`` on a flushed database (the local Redis' db 11 when there is one,
    else the run's embedded server) with the sites of ``toml`` and ``CHATLEAD_<env>``."""
    url = f"{LOCAL_REDIS}{WIDGET_DB}" if redis_url.startswith(LOCAL_REDIS) else redis_url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    config = config_dir / "sites.toml"
    config.write_text(toml, encoding="utf-8")
    settings = {
        "CHATLEAD_REDIS_URL": url,
        "CHATLEAD_CONFIG": str(config),
        "CHATLEAD_WEBHOOK_ALLOW_PRIVATE": "true",
        "CHATLEAD_RETRY_SCHEDULE": "0,1s,1s",
        "PYTHONUNBUFFERED": "1",
        **{f"CHATLEAD_{key.upper()}": value for key, value in env.items()},
    }
    server = ServerProcess({**os.environ, **settings}, port or free_port()).start()
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture(scope="module")
def chat_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    toml = SITE_TOML.format(hook=lead_receiver.url)
    where = tmp_path_factory.mktemp("widget-server")
    with site_server(redis_url, where, toml, webhook_url=lead_receiver.url) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Pages in a fresh context each (own localStorage), motion reduced."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(width: int = 1280, height: int = 800) -> Any:
        context = browser.new_context(
            viewport={"width": width, "height": height}, reduced_motion="reduce"
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


# --- helpers ------------------------------------------------------------------

_axe = axe_module.Axe()


def check_axe(page: Any, state: str, context: str | None = None) -> None:
    """axe-core on the page (or only the widget): zero violations allowed."""
    results = _axe.run(page, context=context) if context else _axe.run(page)
    assert results.violations_count == 0, f"axe, state {state!r}:\n{results.generate_report()}"


def snap(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"widget-{name}.png"))


def widget_eval(page: Any, body: str) -> Any:
    """Evaluate ``body`` with ``root`` bound to the widget's shadow root."""
    return page.evaluate(
        f"() => {{ const root = document.querySelector('chatlead-widget').shadowRoot; {body} }}"
    )


def bubbles(page: Any) -> list[tuple[str, str]]:
    """(speaker, text) of every rendered message, screen-reader prefix removed."""
    rows = widget_eval(
        page,
        "return [...root.querySelectorAll('.g .m')].map(m => "
        "[m.classList.contains('visitor') ? 'visitor' : 'bot', "
        "[...m.childNodes].slice(1).map(n => n.textContent).join('')]);",
    )
    return [(who, text) for who, text in rows]


def stored(page: Any) -> dict[str, Any]:
    return page.evaluate(f"() => JSON.parse(localStorage.getItem('chatlead:{SITE}'))")


def answer(page: Any, label: str, text: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(text)
    field.press("Enter")


def wait_settled(page: Any) -> None:
    """Every optimistic visitor bubble acknowledged by the server."""
    page.wait_for_function(
        "() => !document.querySelector('chatlead-widget').shadowRoot.querySelector('.m.wait')"
    )


def wait_online(page: Any) -> None:
    """The widget holds a socket on which the server's welcome has arrived."""
    page.wait_for_function(
        "() => document.querySelector('chatlead-widget')"
        ".shadowRoot.querySelector('.w').dataset.net === 'online'"
    )


def wait_lead(receiver: LeadReceiver, session_id: str) -> dict[str, Any]:
    leads = poll(lambda: receiver.leads_of(session_id), 15, f"lead of {session_id}")
    return leads[0]  # type: ignore[no-any-return]


def lead_fields(lead: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["value"] for f in lead["data"]["fields"]}


def host_page(
    page: Any,
    server: ServerProcess | None,
    owner: LeadReceiver,
    name: str,
    body: str,
    headers: dict[str, str] | None = None,
    **data: str,
) -> None:
    """Open ``body`` on the site owner's origin with the widget embedded (no widget when
    ``server`` is None); ``headers`` are added to the page's response."""
    attrs = " ".join(f'data-{k}="{v}"' for k, v in data.items())
    script = (
        f'<script src="{server.base}/widget/chatlead.js" {attrs} async></script>' if server else ""
    )
    owner.pages[f"/{name}"] = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host page</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"</head><body>{body}{script}</body></html>"
    ).encode()
    owner.headers[f"/{name}"] = headers or {}
    page.goto(f"{owner.origin}/{name}")


def focused(page: Any) -> str:
    """Class of the focused element inside the widget ('' when focus is elsewhere)."""
    return str(
        page.evaluate(
            "() => { const h = document.querySelector('chatlead-widget');"
            " if (document.activeElement !== h) return '';"
            " const a = h.shadowRoot.activeElement; return a ? (a.className || a.id || a.tagName) : ''; }"  # noqa: E501
        )
    )
