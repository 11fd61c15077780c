"""Host pages that get in the widget's way (issue 19 "Bad input"), in real Chromium.

Hostile CSS (``* { all: unset }``, huge z-indexes), a Content-Security-Policy with no
``'unsafe-inline'`` (only the lines README "Embedding" documents), blocked localStorage
(Safari private mode), and a network that is gone when the visitor first reaches for
the chat: each time the launcher shows and the chat works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import SITE, LeadReceiver, answer, check_axe, host_page, widget_eval

pytestmark = pytest.mark.browser

browser = widget_parts.browser
chat_server = widget_parts.chat_server
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

UNSET_CSS = """
* { all: unset !important; }
html, body { display: block !important; }
.cover { position: fixed !important; inset: auto 0 0 auto !important; width: 50vw !important;
         height: 50vh !important; z-index: 2147483647 !important;
         background: rgba(255, 0, 0, .2) !important; display: block !important; }
chatlead-widget { z-index: -1 !important; position: static !important;
    visibility: hidden !important; transform: scale(0) !important; filter: blur(9px) !important;
    left: -9999px !important; }
"""

VIOLATIONS = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def first_question(page: Any) -> None:
    page.get_by_role("button", name="Open chat").click()
    page.get_by_text("What's your name?").wait_for()


def test_all_unset_and_the_highest_z_index_do_not_hide_it(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    body = f"<style>{UNSET_CSS}</style><main><h1>Host</h1><div class='cover'></div></main>"
    host_page(page, chat_server, lead_receiver, "unset", body, site=SITE)
    first_question(page)  # a click lands on the launcher: nothing covers it
    box = page.get_by_role("dialog").bounding_box()
    assert box is not None and box["width"] == 370, box
    style = widget_eval(page, "return getComputedStyle(root.querySelector('.g .m')).fontSize")
    assert style == "15px"
    answer(page, "Your name", "Una Set")
    page.get_by_label("Your email address", exact=True).wait_for()
    check_axe(page, "all: unset host", context="chatlead-widget")


def test_a_strict_csp_without_unsafe_inline_is_enough(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    page.add_init_script(VIOLATIONS)
    ws_origin = chat_server.base.replace("http://", "ws://")
    # the lines README documents, for this server's origin (wss: in production)
    csp = (
        f"default-src 'none'; script-src {chat_server.base}; connect-src {ws_origin}; "
        "style-src 'self'; base-uri 'none'"
    )
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    host_page(
        page, chat_server, lead_receiver, "csp", "<main><h1>Strict</h1></main>",
        headers={"content-security-policy": csp}, site=SITE,
    )  # fmt: skip
    first_question(page)
    answer(page, "Your name", "Cy Policy")
    page.get_by_label("Your email address", exact=True).wait_for()
    # styled, not bare: the sheets were applied
    assert widget_eval(page, "return getComputedStyle(root.querySelector('.p')).borderRadius") == (
        "16px"
    )
    assert page.evaluate("window.__violations") == []
    assert not [line for line in console if "Content Security" in line], console
    # a check of the check: the policy is in force, an inline style is refused
    page.evaluate("() => document.head.append(Object.assign(document.createElement('style'),"
                  " {textContent: 'main{color:red}'}))")  # fmt: skip
    page.wait_for_function("() => window.__violations.some(v => v.startsWith('style-src'))")


def test_blocked_local_storage_still_chats(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    page.add_init_script(
        "Object.defineProperty(window, 'localStorage', {get() {"
        " throw new DOMException('The operation is insecure.', 'SecurityError'); }});"
    )
    host_page(
        page, chat_server, lead_receiver, "nostorage", "<main><h1>Private</h1></main>", site=SITE
    )
    first_question(page)
    answer(page, "Your name", "Pri Vate")
    page.get_by_label("Your email address", exact=True).wait_for()
    answer(page, "Your email address", "pri@example.com")
    page.get_by_label("Your phone number", exact=True).wait_for()


def test_offline_at_first_use_then_back(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    host_page(page, chat_server, lead_receiver, "offline", "<main><h1>Train</h1></main>", site=SITE)
    launcher = page.get_by_role("button", name="Open chat")
    launcher.wait_for()
    page.context.set_offline(True)
    launcher.click()
    page.wait_for_function(
        "() => !document.querySelector('chatlead-widget').shadowRoot.querySelector('.l')"
        ".hasAttribute('aria-busy')"
    )  # the UI could not be fetched
    assert launcher.is_visible()
    assert widget_eval(page, "return root.querySelector('.p')") is None
    page.context.set_offline(False)
    # back online: the UI the visitor asked for loads and opens by itself
    page.get_by_text("What's your name?").wait_for()
    answer(page, "Your name", "Off Line")
    page.get_by_label("Your email address", exact=True).wait_for()
