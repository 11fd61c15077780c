"""The widget in a real browser against the real server (docs/PROTOCOL.md, README Embedding).

Headless Chromium (Debian's ``/usr/bin/chromium``) drives ``/demo`` and a few
host pages served from another origin; ``python -m server serve`` runs as a
subprocess (``tests/widget_parts.py``) and delivers leads to a local webhook
receiver. Every
widget state is checked with axe-core and saved as a screenshot under
``tests/artifacts/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import (
    SITE,
    LeadReceiver,
    answer,
    bubbles,
    check_axe,
    focused,
    host_page,
    lead_fields,
    snap,
    stored,
    wait_lead,
    wait_online,
    wait_settled,
    widget_eval,
)

pytestmark = pytest.mark.browser

# the shared fixtures, used by name
browser = widget_parts.browser
chat_server = widget_parts.chat_server
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

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
    assert fields["service"] == "drain"  # the option's value; the transcript has its label
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
