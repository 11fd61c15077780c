"""How the widget looks, state by state, at desktop and phone sizes (issue 19 "Look").

Each state is saved under ``tests/artifacts/look-<viewport>-<state>.png`` (for a person
to look at) and checked with axe-core; the few properties that make it read as a
finished product (close icon on the open launcher, light accent focus ring, a ring that
keeps the launcher apart from a same-coloured page, avatars, times, typing dots) are
asserted too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import (
    ARTIFACTS,
    SITE,
    LeadReceiver,
    answer,
    check_axe,
    host_page,
    stored,
    wait_settled,
    widget_eval,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = widget_parts.browser
chat_server = widget_parts.chat_server
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

VIEWPORTS = {"desktop": (1440, 900), "phone": (390, 844)}
LIGHT_PAGE = (
    "<style>body{margin:0;font:18px system-ui}</style>"
    "<main style='background:linear-gradient(135deg,#073f63,#1276b3);color:#fff;"
    "padding:48px 24px;min-height:100vh'><h1>Plumbing done right</h1>"
    "<p>A blue hero reaching the launcher's corner.</p></main>"
)
DARK_PAGE = (
    "<style>body{background:#0d1117;color:#e6edf3;margin:0}"
    "main{padding:48px 24px;min-height:100vh}</style>"
    "<main><h1>A dark site</h1><p>The launcher and its focus ring stay visible.</p></main>"
)


class HeldReplies:
    """Routes the widget's socket through the test so the server's replies can wait."""

    def __init__(self, page: Any, server: ServerProcess) -> None:
        self.hold = False
        self.held: list[str] = []
        self.client: Any = None

        def route(ws: Any) -> None:
            upstream = ws.connect_to_server()
            self.client = ws
            ws.on_message(upstream.send)
            upstream.on_message(self._from_server)

        page.route_web_socket(f"{server.ws_url}*", route)

    def _from_server(self, message: str) -> None:
        if self.hold and '"type":"message"' in message.replace(" ", ""):
            self.held.append(message)
        else:
            self.client.send(message)

    def release(self) -> None:
        self.hold = False
        for message in self.held:
            self.client.send(message)
        self.held.clear()


def shot(page: Any, viewport: str, state: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"look-{viewport}-{state}.png"))
    check_axe(page, f"{viewport} {state}")


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


def test_each_state_looks_finished(
    chat_server: ServerProcess,
    lead_receiver: LeadReceiver,
    new_page: Callable[..., Any],
    viewport: str,
) -> None:
    page = new_page(*VIEWPORTS[viewport])
    replies = HeldReplies(page, chat_server)
    host_page(
        page,
        chat_server,
        lead_receiver,
        f"look-{viewport}",
        LIGHT_PAGE,
        site=SITE,
        title="Brightwater Plumbing",
        greeting="Automated assistant · a few quick questions",
        accent="#0a5a8c",
    )
    launcher = page.get_by_role("button", name="Open chat")
    launcher.wait_for()
    ring = widget_eval(page, "return getComputedStyle(root.querySelector('.l')).boxShadow")
    assert "rgba(255, 255, 255, 0.92) 0px 0px 0px 2px" in ring, ring
    shot(page, viewport, "1-closed")

    launcher.click()
    page.get_by_text("What's your name?").wait_for()
    faces = widget_eval(
        page,
        "const l = root.querySelector('.l');"
        "return [getComputedStyle(l.querySelector('.b')).opacity,"
        " getComputedStyle(l.querySelector('.c')).opacity, l.getAttribute('aria-label')];",
    )
    assert faces == ["0", "1", "Close chat"], "an open panel turns the launcher into a close button"
    focus = widget_eval(
        page,
        "const s = getComputedStyle(root.activeElement);"
        "return [root.activeElement.id, s.outlineStyle, s.borderColor, s.boxShadow];",
    )
    assert focus[:3] == ["i", "none", "rgb(10, 90, 140)"], focus
    assert "rgba(10, 90, 140, 0.24)" in focus[3] or "0.24" in focus[3], focus
    assert widget_eval(page, "return root.querySelector('.r.bot .av').textContent") == "B"
    assert widget_eval(page, "return root.querySelector('.r.bot .t').textContent").strip()
    shot(page, viewport, "2-open")

    replies.hold = True
    answer(page, "Your name", "Ann Lee")
    page.wait_for_function(
        "() => document.querySelector('chatlead-widget').shadowRoot.querySelector('.typing')"
    )
    wait_settled(page)
    shot(page, viewport, "3-typing")
    replies.release()

    answer(page, "Your email address", "ann@example.com")
    page.get_by_role("button", name="Skip").click()
    page.get_by_role("button", name="Drain").wait_for()
    shot(page, viewport, "4-choice")


def test_on_a_dark_page_the_launcher_and_its_focus_ring_show(
    chat_server: ServerProcess,
    lead_receiver: LeadReceiver,
    new_page: Callable[..., Any],
    viewport: str,
) -> None:
    page = new_page(*VIEWPORTS[viewport])
    host_page(page, chat_server, lead_receiver, f"dark-{viewport}", DARK_PAGE, site=SITE)
    launcher = page.get_by_role("button", name="Open chat")
    launcher.wait_for()
    page.keyboard.press("Tab")
    ring = widget_eval(
        page,
        "const s = getComputedStyle(root.activeElement); return [s.boxShadow, s.outline];",
    )
    assert ring[0].startswith("rgb(27, 31, 36) 0px 0px 0px 3px"), ring  # shows on light
    assert ring[1] == "rgb(255, 255, 255) solid 3px", ring  # shows on dark
    shot(page, viewport, "5-dark-focus")
    page.keyboard.press("Enter")
    page.get_by_text("What's your name?").wait_for()
    shot(page, viewport, "6-dark-open")


def test_an_agent_who_takes_over_is_shown(
    chat_server: ServerProcess,
    lead_receiver: LeadReceiver,
    new_page: Callable[..., Any],
    viewport: str,
) -> None:
    """CONTRACT §10 visitor side: agent joined/left, typing, messages with a name. The
    frames are played into the widget's socket here, as a held chat would send them."""
    page = new_page(*VIEWPORTS[viewport])
    replies = HeldReplies(page, chat_server)
    host_page(
        page, chat_server, lead_receiver, f"agent-{viewport}", LIGHT_PAGE,
        site=SITE, title="Brightwater Plumbing", accent="#0a5a8c",
        greeting="Automated assistant · a few quick questions",
    )  # fmt: skip
    page.get_by_role("button", name="Open chat").click()
    page.get_by_text("What's your name?").wait_for()
    seq = stored(page)["seq"]

    def play(**frame: Any) -> None:
        replies.client.send(json.dumps(frame))

    def said(n: int, text: str) -> None:
        ts = "2026-12-03T10:00:00Z"
        play(type="message", seq=seq + n, **{"from": "agent"}, name="Ana", text=text, ts=ts)

    header = "return [root.querySelector('h2').textContent, root.querySelector('header .av').textContent]"
    play(type="agent", status="joined", name="Ana")
    page.get_by_text("Ana joined the chat").wait_for()
    assert widget_eval(page, header) == ["Ana", "A"]
    play(type="typing", **{"from": "agent"})
    page.get_by_text("Ana is typing…").wait_for()
    said(1, "Hi, I'm Ana <b>from the team</b>")
    said(2, "How can I help?")
    page.get_by_text("How can I help?").wait_for()
    assert not widget_eval(page, "return root.querySelector('.typing')")
    names = "return [...root.querySelectorAll('.nm')].filter(n => n.offsetParent).map(n => n.textContent)"
    assert widget_eval(page, names) == ["Ana"], "the name heads a run of messages once"
    assert page.get_by_text("Hi, I'm Ana <b>from the team</b>").is_visible()  # text, not markup
    assert page.get_by_label("Type your message", exact=True).is_visible(), "free text to the agent"
    play(type="typing", **{"from": "agent"})
    page.get_by_text("Ana is typing…").wait_for()
    shot(page, viewport, "8-agent")

    play(type="agent", status="left", name="Ana")
    page.get_by_text("Ana left the chat").wait_for()
    assert widget_eval(page, header)[0] == "Brightwater Plumbing"
    assert not widget_eval(page, "return root.querySelector('.typing')")

    page.reload()
    page.get_by_text("How can I help?").wait_for()
    rows = widget_eval(
        page,
        "return [...root.querySelectorAll('.g > .r')].map(r => r.className + ': ' +"
        " [...r.querySelectorAll('.av, .nm, .m, p')].map(e => e.textContent).join(' | '))",
    )
    assert rows[-4:] == [
        "r y: Ana joined the chat",
        "r agent: A | Ana | Ana: Hi, I'm Ana <b>from the team</b>",
        "r agent: A | Ana | Ana: How can I help?",
        "r y: Ana left the chat",
    ], rows
    assert stored(page)["seq"] == seq + 2, "a note is no message: last_seq stays a server seq"


LAUNCHER_NAMES = {
    "en": "Open chat", "es": "Abrir chat", "fr": "Ouvrir le chat", "de": "Chat öffnen",
    "pt": "Abrir chat", "it": "Apri la chat", "nl": "Chat openen", "pl": "Otwórz czat",
    "tr": "Sohbeti aç", "ja": "チャットを開く", "ar": "افتح الدردشة", "he": "פתח צ'אט",
}  # fmt: skip


def test_twelve_languages_name_the_launcher(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    for lang, name in LAUNCHER_NAMES.items():
        host_page(
            page, chat_server, lead_receiver, f"lang-{lang}", "<main>x</main>", site=SITE, lang=lang
        )
        page.get_by_role("button", name=name, exact=True).wait_for()


def test_right_to_left_is_mirrored(
    chat_server: ServerProcess,
    lead_receiver: LeadReceiver,
    new_page: Callable[..., Any],
    viewport: str,
) -> None:
    page = new_page(*VIEWPORTS[viewport])
    host_page(
        page, chat_server, lead_receiver, f"rtl-{viewport}", LIGHT_PAGE,
        site=SITE, lang="ar", title="سباكة برايتووتر", accent="#0a5a8c",
    )  # fmt: skip
    page.get_by_role("button", name="افتح الدردشة").click()
    page.get_by_text("ما اسمك؟").wait_for()  # the site's own Arabic (texts.ar)
    assert widget_eval(page, "const w = root.querySelector('.w'); return [w.lang, w.dir];") == [
        "ar",
        "rtl",
    ]
    answer(page, "اسمك", "ليلى")
    page.get_by_label("بريدك الإلكتروني", exact=True).wait_for()
    wait_settled(page)
    sides = widget_eval(
        page,
        "const box = (s) => root.querySelector(s).getBoundingClientRect();"
        "return [box('.r.visitor .m').left, box('.r.bot .m').left];",
    )
    assert sides[0] < sides[1], "the visitor's messages sit on the left in RTL"
    box = page.get_by_role("dialog").bounding_box()
    width, height = VIEWPORTS[viewport]
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    shot(page, viewport, "7-rtl")
