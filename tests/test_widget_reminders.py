"""Reminder emails in a real browser (CONTRACT §11): a chat is left, a real SMTP server
(aiosmtpd) receives the reminder, its link is opened in a fresh browser context (another
device) and the lead is completed there; and a visitor who unsubscribes from the first
reminder, by the link in it, gets no second one."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess, free_port
from tests.test_formats_email import Smtpd
from tests.widget_parts import (
    LeadReceiver,
    answer,
    bubbles,
    host_page,
    lead_fields,
    poll,
    site_server,
    snap,
    wait_settled,
)

pytestmark = pytest.mark.browser

browser = widget_parts.browser
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

SITE = """
[sites.acme]
company = "Brightwater Plumbing"
allowed_origins = ["{origin}"]
idle_timeout = "2s"
[sites.acme.webhook]
url = "{hook}"
[sites.acme.recovery]
reminders = ["1s", "3s"]
from = "Brightwater Plumbing <hello@brightwater.example>"
subject = "Finish your quote request"
"""


@pytest.fixture(scope="module")
def smtpd() -> Iterator[Smtpd]:
    server = Smtpd(auth_require_tls=False)
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture(scope="module")
def reminder_server(
    lead_receiver: LeadReceiver,
    smtpd: Smtpd,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    toml = SITE.format(origin=lead_receiver.origin, hook=lead_receiver.url)
    port = free_port()
    where = tmp_path_factory.mktemp("reminder-server")
    public = f"http://127.0.0.1:{port}"
    with site_server(
        redis_url, where, toml, port, smtp_url=smtpd.url(), public_url=public
    ) as server:
        yield server


def _leave(page: Any, server: ServerProcess, owner: LeadReceiver, email: str) -> str:
    host_page(
        page, server, owner, f"quote-{email[:5]}", "<main><h1>Quotes</h1></main>", site="acme"
    )
    page.get_by_role("button", name="Open chat").click()
    answer(page, "Your name", "Ada Lovelace")
    answer(page, "Your email address", email)
    page.get_by_label("Your phone number", exact=True).wait_for()
    wait_settled(page)
    return str(page.evaluate("() => JSON.parse(localStorage.getItem('chatlead:acme')).sid"))


def _mail_to(smtpd: Smtpd, address: str, count: int = 1) -> list[EmailMessage]:
    def found() -> list[EmailMessage] | None:
        mails = [m for m in smtpd.handler.messages if m["To"] == address]
        return mails if len(mails) >= count else None

    return poll(found, 20, f"{count} reminder(s) to {address}")  # type: ignore[no-any-return]


def _link(message: EmailMessage, kind: str) -> str:
    html = message.get_body(("html",)).get_content()
    return str(re.search(rf'href="(http://[^"]+/{kind}/[^"]+)"', html).group(1)).replace(  # type: ignore[union-attr]
        "&amp;", "&"
    )


def test_the_link_in_the_reminder_finishes_the_chat_on_another_device(
    reminder_server: ServerProcess,
    lead_receiver: LeadReceiver,
    smtpd: Smtpd,
    new_page: Callable[..., Any],
) -> None:
    sid = _leave(new_page(), reminder_server, lead_receiver, "ada@example.com")
    [first] = _mail_to(smtpd, "ada@example.com")
    assert first["Subject"] == "Finish your quote request"
    other = new_page(390, 844)  # another device: nothing of the chat stored
    other.goto(_link(first, "r"))
    phone = other.get_by_label("Your phone number", exact=True)
    phone.wait_for()
    assert [t for who, t in bubbles(other) if who == "visitor"] == [
        "Ada Lovelace",
        "ada@example.com",
    ]
    assert "What's the best email" in " ".join(t for who, t in bubbles(other) if who == "bot")
    snap(other, "reminder-resumed-390")
    other.get_by_role("button", name="Skip").click()
    answer(other, "Type your message", "Back from the email")
    other.get_by_role("button", name="Start a new conversation").wait_for()
    wait_settled(other)
    completed = poll(
        lambda: next(
            (b for b in lead_receiver.leads_of(sid) if b["type"] == "lead.completed"), None
        ),
        15,
        "the completed lead",
    )
    fields = lead_fields(completed)
    assert fields["recovered_by"] == "reminder:1" and fields["message"] == "Back from the email"


def test_unsubscribing_from_the_first_reminder_stops_the_second(
    reminder_server: ServerProcess,
    lead_receiver: LeadReceiver,
    smtpd: Smtpd,
    new_page: Callable[..., Any],
) -> None:
    _leave(new_page(), reminder_server, lead_receiver, "grace@example.com")
    [first] = _mail_to(smtpd, "grace@example.com")
    mail_client = new_page()
    mail_client.goto(_link(first, "u"))
    mail_client.get_by_role("heading", name="Stop reminders?").wait_for()
    mail_client.get_by_role("button", name="Unsubscribe").click()
    mail_client.get_by_role("heading", name="You are unsubscribed").wait_for()
    time.sleep(3.5)  # past the second step's due time (3 s after the abandonment)
    assert len([m for m in smtpd.handler.messages if m["To"] == "grace@example.com"]) == 1
