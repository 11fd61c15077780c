"""The widget in a real browser against the real server (docs/PROTOCOL.md, README Embedding).

Headless Chromium (Debian's ``/usr/bin/chromium``) drives ``/demo`` and a few
host pages served from another origin; ``python -m server serve`` runs as a
subprocess (on Redis db ``CHATLEAD_WIDGET_TEST_DB``, default 11, of the local Redis, else on the run's embedded
server) and delivers leads to a local webhook receiver. Every
widget state is checked with axe-core and saved as a screenshot under
``tests/artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
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

pytestmark = pytest.mark.browser

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
options = ["Leak", "Drain", "Water heater"]
ask = "What do you need help with?"

[[sites.acme.flow]]
field = "message"
ask = "Anything else we should know?"
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
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                page = received.pages.get(self.path)
                self.send_response(200 if page else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page or b"")))
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


@pytest.fixture(scope="module")
def chat_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    # the local Redis when there is one (db 11), else the run's embedded server
    url = f"{LOCAL_REDIS}{WIDGET_DB}" if redis_url.startswith(LOCAL_REDIS) else redis_url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    tmp = tmp_path_factory.mktemp("widget-server")
    config = tmp / "sites.toml"
    config.write_text(SITE_TOML.format(hook=lead_receiver.url), encoding="utf-8")
    env = {
        **os.environ,
        "CHATLEAD_REDIS_URL": url,
        "CHATLEAD_CONFIG": str(config),
        "CHATLEAD_WEBHOOK_URL": lead_receiver.url,
        "CHATLEAD_WEBHOOK_ALLOW_PRIVATE": "true",
        "CHATLEAD_RETRY_SCHEDULE": "0,1s,1s",
        "PYTHONUNBUFFERED": "1",
    }
    server = ServerProcess(env, free_port()).start()
    yield server
    server.terminate()


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
    page: Any, server: ServerProcess, owner: LeadReceiver, name: str, body: str, **data: str
) -> None:
    """Open ``body`` on the site owner's origin with the widget embedded."""
    attrs = " ".join(f'data-{k}="{v}"' for k, v in data.items())
    script = f'<script src="{server.base}/widget/chatlead.js" {attrs} async></script>'
    owner.pages[f"/{name}"] = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host page</title>'
        f"</head><body>{body}{script}</body></html>"
    ).encode()
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


# --- scenarios -------------------------------------------------------------------


def test_conversation_by_clicks_and_typing_delivers_the_lead(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    page.goto(f"{chat_server.base}/demo?site={SITE}")
    launcher = page.get_by_role("button", name="Open chat")
    launcher.wait_for()
    snap(page, "1-closed")
    check_axe(page, "closed")

    launcher.click()
    page.get_by_text("What's your name?").wait_for()
    assert (
        widget_eval(page, "return getComputedStyle(root.querySelector('.p')).animationName")
        == "none"
    ), "prefers-reduced-motion must switch the panel animation off"
    snap(page, "2-open")
    check_axe(page, "open")

    answer(page, "Your name", "Ann Lee")
    email = page.get_by_label("Your email address", exact=True)
    email.wait_for()
    assert email.get_attribute("type") == "email"
    assert email.get_attribute("autocomplete") == "email"
    answer(page, "Your email address", "not-an-email")
    error = page.get_by_role("alert").filter(has_text="look like an email address")
    error.wait_for()
    assert email.get_attribute("aria-invalid") == "true"
    assert email.input_value() == "not-an-email", "the rejected value is kept for editing"
    snap(page, "3-invalid")
    check_axe(page, "invalid field")

    answer(page, "Your email address", "ann@example.com")
    page.get_by_text("And a phone number? (optional)").wait_for()
    assert not error.is_visible()
    phone = page.get_by_label("Your phone number", exact=True)
    assert phone.get_attribute("type") == "tel"
    snap(page, "4-optional")
    page.get_by_role("button", name="Skip").click()

    page.get_by_role("button", name="Drain").wait_for()
    snap(page, "5-choice")
    check_axe(page, "choice prompt")
    page.get_by_role("button", name="Drain").click()

    page.get_by_text("Anything else we should know?").wait_for()
    hostile_text = '<img src=x onerror="window.pwned=1"> & <b>bold</b>'
    answer(page, "Type your message", hostile_text)
    page.get_by_role("button", name="Start a new conversation").wait_for()
    wait_settled(page)
    snap(page, "6-finished")
    check_axe(page, "finished")

    # text is rendered as text, never as markup
    assert widget_eval(page, "return root.querySelectorAll('.g img, .g b').length") == 0
    assert page.evaluate("() => window.pwned") is None
    visitor = [text for who, text in bubbles(page) if who == "visitor"]
    assert visitor == ["Ann Lee", "ann@example.com", "Skipped", "Drain", hostile_text]

    session = stored(page)
    lead = wait_lead(lead_receiver, session["sid"])
    assert lead["type"] == "lead.completed"
    assert lead["data"]["isAbandoned"] is False
    assert lead["data"]["userId"] == page.evaluate("() => JSON.parse(localStorage['chatlead:uid'])")
    fields = lead_fields(lead)
    assert fields["name"] == "Ann Lee"
    assert fields["email"] == "ann@example.com"
    assert fields["service"] == "Drain"
    assert fields["message"] == hostile_text
    assert "phone" not in fields
    assert fields["page_url"].endswith(f"/demo?site={SITE}")


def test_reload_and_navigation_restore_the_conversation(
    chat_server: ServerProcess, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    page.goto(f"{chat_server.base}/demo?site={SITE}")
    page.get_by_role("button", name="Open chat").click()
    answer(page, "Your name", "Rosa Díaz")
    page.get_by_label("Your email address", exact=True).wait_for()
    wait_settled(page)
    before = bubbles(page)
    session = stored(page)["sid"]

    page.reload()
    # the panel stays open across page loads and shows the cached transcript at once
    page.get_by_label("Your email address", exact=True).wait_for()
    wait_online(page)
    assert bubbles(page) == before
    snap(page, "7-reloaded")

    answer(page, "Your email address", "rosa@example.com")
    page.get_by_label("Your phone number", exact=True).wait_for()
    wait_settled(page)
    before = bubbles(page)

    page.goto(f"{chat_server.base}/demo?site={SITE}&from=services")
    page.get_by_label("Your phone number", exact=True).wait_for()
    wait_online(page)
    assert bubbles(page) == before
    assert stored(page)["sid"] == session
    seqs = [m["seq"] for m in stored(page)["msgs"]]
    assert seqs == sorted(set(seqs)), "each message once, in order"


def test_server_killed_mid_conversation_loses_and_duplicates_nothing(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    page.goto(f"{chat_server.base}/demo?site={SITE}")
    page.get_by_role("button", name="Open chat").click()
    answer(page, "Your name", "Bo Chen")
    page.get_by_label("Your email address", exact=True).wait_for()
    wait_settled(page)

    chat_server.kill()
    page.get_by_text("Offline.").wait_for()
    answer(page, "Your email address", "bo@example.com")
    answer(page, "Type your message", "Also, the water heater is leaking")
    assert widget_eval(page, "return root.querySelectorAll('.m.wait').length") == 2
    assert len(stored(page)["out"]) == 2, "unacked frames are kept across page loads"
    snap(page, "8-offline")
    check_axe(page, "offline with queued messages")

    chat_server.start()
    page.get_by_text("And a phone number? (optional)").wait_for(timeout=20_000)
    wait_settled(page)
    page.get_by_role("button", name="Skip").click()
    page.get_by_role("button", name="Water heater").click()
    page.get_by_text("Anything else we should know?").wait_for()
    answer(page, "Type your message", "Thanks")
    page.get_by_role("button", name="Start a new conversation").wait_for()
    wait_settled(page)

    sent = ["Bo Chen", "bo@example.com", "Also, the water heater is leaking"]
    visitor = [text for who, text in bubbles(page) if who == "visitor"]
    assert visitor == [*sent, "Skipped", "Water heater", "Thanks"]
    lead = wait_lead(lead_receiver, stored(page)["sid"])
    said = [m["message"] for m in lead["data"]["transcript"] if m["from"]["id"] != "bot"]
    assert said == [*sent, "(skipped)", "Water heater", "Thanks"], "each exactly once"
    assert lead_fields(lead)["email"] == "bo@example.com"
    time.sleep(0.5)  # an absence cannot be polled: give a duplicate delivery a moment
    assert len(lead_receiver.leads_of(stored(page)["sid"])) == 1


HOSTILE_CSS = """
* { font: 40px/0.6 "Comic Sans MS", cursive !important; color: #f0f !important;
    letter-spacing: 6px !important; text-transform: uppercase !important;
    box-sizing: content-box !important; background: #ff0 !important; }
chatlead-widget, aside, section, div, form, input, button { display: none !important;
    position: static !important; width: 3px !important; opacity: 0 !important; }
p { margin: 80px !important; border: 9px dashed red !important; }
:root { --a: red; --af: red; }
"""


def test_hostile_host_css_cannot_break_the_widget(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    body = f"<style>{HOSTILE_CSS}</style><h1>Host</h1><p>Page text</p>"
    host_page(
        page,
        chat_server,
        lead_receiver,
        "hostile",
        body,
        site=SITE,
        lang="es",
        position="left",
        accent="#ffd400",
        open="",
        title="Fontanería Brightwater",
    )
    page.get_by_text("What's your name?").wait_for()
    panel = page.get_by_role("dialog", name="Fontanería Brightwater")
    box = panel.bounding_box()
    assert box is not None
    assert box["x"] == 20 and box["width"] == 370, box
    style = widget_eval(
        page,
        "const m = getComputedStyle(root.querySelector('.g .m'));"
        "const h = getComputedStyle(root.querySelector('header'));"
        "return [m.fontSize, m.color, m.textTransform, h.color, h.backgroundColor];",
    )
    # a light accent gets dark text on it, for contrast
    assert style == ["15px", "rgb(27, 31, 36)", "none", "rgb(17, 17, 17)", "rgb(255, 212, 0)"]
    assert page.get_by_role("log", name="Conversación").is_visible()
    answer(page, "Tu nombre", "Lu Wang")
    page.get_by_label("Tu correo electrónico", exact=True).wait_for()
    snap(page, "9-hostile-css")
    check_axe(page, "hostile host page", context="chatlead-widget")


def test_keyboard_only(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    body = '<main><h1>Keyboard</h1><a href="#x">A link</a></main>'
    host_page(page, chat_server, lead_receiver, "keyboard", body, site=SITE)
    page.get_by_role("button", name="Open chat").wait_for()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused(page) == "l", "the launcher follows the page's own controls"
    page.keyboard.press("Enter")
    page.get_by_text("What's your name?").wait_for()
    assert focused(page) == "i", "opening moves focus to the input"

    page.keyboard.type("Kim Park")
    page.keyboard.press("Enter")
    page.get_by_label("Your email address", exact=True).wait_for()
    page.keyboard.type("kim@example.com")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Skip").wait_for()
    page.keyboard.press("Tab")
    assert focused(page) == "k"
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Leak").wait_for()
    assert focused(page) == "i", "focus returns to the input after skipping"
    page.keyboard.press("Shift+Tab")
    assert (
        page.evaluate(
            "() => document.querySelector('chatlead-widget').shadowRoot.activeElement.textContent"
        )
        == "Water heater"
    )
    snap(page, "10-keyboard-choice")
    page.keyboard.press("Enter")
    page.get_by_text("Anything else we should know?").wait_for()
    assert focused(page) == "i"
    page.keyboard.type("No, thanks")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Start a new conversation").wait_for()
    assert (
        page.evaluate(
            "() => document.querySelector('chatlead-widget').shadowRoot.activeElement.textContent"
        )
        == "Start a new conversation"
    ), "focus is not lost when the input goes away"
    page.keyboard.press("Escape")
    assert not page.get_by_role("dialog").is_visible()
    assert focused(page) == "l", "closing returns focus to the launcher"

    lead = wait_lead(lead_receiver, stored(page)["sid"])
    assert lead_fields(lead)["service"] == "Water heater"


def test_mobile_viewport_is_full_screen(
    chat_server: ServerProcess, new_page: Callable[..., Any]
) -> None:
    page = new_page(375, 667)
    page.goto(f"{chat_server.base}/demo?site={SITE}")
    page.get_by_role("button", name="Open chat").click()
    page.get_by_text("What's your name?").wait_for()
    box = page.get_by_role("dialog").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 375, "height": 667}
    assert not page.get_by_role("button", name="Open chat").is_visible()
    assert widget_eval(page, "return getComputedStyle(root.querySelector('input')).fontSize") == (
        "16px"
    ), "16px inputs keep mobile browsers from zooming"
    snap(page, "11-mobile")
    check_axe(page, "mobile")
    page.get_by_role("button", name="Close chat").click()
    assert page.get_by_role("button", name="Open chat").is_visible()


def test_unknown_site_stops_and_says_so(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    body = "<main><h1>Other</h1></main>"
    host_page(page, chat_server, lead_receiver, "other", body, site="nope")
    page.get_by_role("button", name="Open chat").click()
    page.get_by_text("Chat is unavailable right now.").wait_for()
    snap(page, "12-unavailable")
    check_axe(page, "unavailable")
    assert re.fullmatch(
        r"[0-9a-f-]{36}", page.evaluate("() => JSON.parse(localStorage['chatlead:uid'])")
    )


def test_a_second_tab_follows_the_conversation(
    chat_server: ServerProcess, new_page: Callable[..., Any]
) -> None:
    first = new_page()
    first.goto(f"{chat_server.base}/demo?site={SITE}")
    first.get_by_role("button", name="Open chat").click()
    answer(first, "Your name", "Tab One")
    first.get_by_label("Your email address", exact=True).wait_for()
    wait_settled(first)

    second = first.context.new_page()
    second.goto(f"{chat_server.base}/demo?site={SITE}")
    second.get_by_label("Your email address", exact=True).wait_for()
    wait_online(second)
    answer(first, "Your email address", "tab@example.com")
    second.get_by_label("Your phone number", exact=True).wait_for()
    wait_settled(first)
    assert bubbles(second) == bubbles(first)
