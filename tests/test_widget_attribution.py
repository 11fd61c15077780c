"""Attribution and the opening trigger reach the lead (CONTRACT §13), in real Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import SITE, LeadReceiver, answer, host_page, lead_fields, stored, wait_lead

pytestmark = pytest.mark.browser

browser = widget_parts.browser
chat_server = widget_parts.chat_server
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page


def test_the_landing_page_ads_and_first_touch_are_lead_fields(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    landing = "land?utm_source=news&utm_campaign=spring&gclid=G-1"
    host_page(page, chat_server, lead_receiver, landing, "<main><h1>Landing</h1></main>", site=SITE)
    page.wait_for_function("() => localStorage.getItem('chatlead:first')")
    # a later page without parameters: the chat opened from the page's own button
    host_page(
        page, chat_server, lead_receiver, "pricing", "<main><h1>Pricing</h1></main>", site=SITE
    )
    page.get_by_role("button", name="Open chat").wait_for()
    page.evaluate("() => window.chatlead.open()")
    answer(page, "Your name", "Ada Tribution")
    answer(page, "Your email address", "ada@example.com")
    page.get_by_text("And a phone number? (optional)").wait_for()
    page.get_by_role("button", name="Skip").click()
    page.get_by_role("button", name="Leak").click()
    page.get_by_text("Anything else we should know?").wait_for()
    answer(page, "Type your message", "Thanks")
    page.get_by_role("button", name="Start a new conversation").wait_for()

    fields = lead_fields(wait_lead(lead_receiver, stored(page)["sid"]))
    assert fields["utm_source"] == "news" and fields["utm_campaign"] == "spring"
    assert fields["gclid"] == "G-1"
    assert fields["first_landing_page"].endswith(
        "/land?utm_source=news&utm_campaign=spring&gclid=G-1"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["first_seen"])
    assert fields["page_url"].endswith("/pricing")
    assert fields["trigger"] == "api"
