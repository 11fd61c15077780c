"""A resume link in a real browser (CONTRACT §11): a chat left on one device is picked
up on another -- a fresh browser context with nothing stored -- from the link in the
``lead.abandoned`` event, and completed there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess, free_port
from tests.widget_parts import (
    LeadReceiver,
    answer,
    bubbles,
    host_page,
    lead_fields,
    poll,
    site_server,
    wait_settled,
)

pytestmark = pytest.mark.browser

browser = widget_parts.browser
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

FLOW = """
[[sites.{site}.flow]]
field = "name"
ask = "What's your name?"
required = true

[[sites.{site}.flow]]
field = "email"
ask = "What's the best email to reach you?"
required = true

[[sites.{site}.flow]]
field = "phone"
ask = "And a phone number? (optional)"

[[sites.{site}.flow]]
field = "message"
ask = "Anything else we should know?"
"""


def _site(site: str, origins: str, hook: str) -> str:
    head = (
        f'[sites.{site}]\ncompany = "Brightwater Plumbing"\nallowed_origins = [{origins}]\n'
        f'idle_timeout = "2s"\n[sites.{site}.webhook]\nurl = "{hook}"\n'
    )
    return head + FLOW.format(site=site)


@pytest.fixture(scope="module")
def resume_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``acme`` names the owner's origin (links lead back to its page); ``open`` allows
    any origin (links lead to the chat page of our own)."""
    hook = lead_receiver.url
    toml = _site("acme", f'"{lead_receiver.origin}"', hook) + _site("open", '"*"', hook)
    port = free_port()
    where = tmp_path_factory.mktemp("resume-server")
    with site_server(redis_url, where, toml, port, public_url=f"http://127.0.0.1:{port}") as server:
        yield server


def _leave_a_chat(page: Any, server: ServerProcess, owner: LeadReceiver, site: str) -> str:
    """Answer two questions on the owner's page, then go quiet: the session id."""
    host_page(page, server, owner, f"quote-{site}", "<h1>Get a quote</h1>", site=site)
    page.get_by_role("button", name="Open chat").click()
    answer(page, "Your name", "Ada Lovelace")
    answer(page, "Your email address", "ada@example.com")
    page.get_by_label("Your phone number", exact=True).wait_for()
    wait_settled(page)
    sid: str = page.evaluate(f"() => JSON.parse(localStorage.getItem('chatlead:{site}')).sid")
    return sid


def _event(owner: LeadReceiver, sid: str, kind: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((b for b in owner.leads_of(sid) if b["type"] == kind), None)

    return poll(found, 20, f"{kind} of {sid}")  # type: ignore[no-any-return]


def _pick_up_and_finish(page: Any) -> None:
    """The transcript and the pending question are there; finish the lead."""
    phone = page.get_by_label("Your phone number", exact=True)
    phone.wait_for()
    said = [text for who, text in bubbles(page) if who == "visitor"]
    assert said == ["Ada Lovelace", "ada@example.com"]
    assert "chatlead-resume" not in page.url, "the token leaves the address bar"
    page.get_by_role("button", name="Skip").click()
    answer(page, "Type your message", "Back from my phone")
    page.get_by_role("button", name="Start a new conversation").wait_for()
    wait_settled(page)


def test_a_link_brings_the_visitor_back_to_the_page_on_another_device(
    resume_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    sid = _leave_a_chat(new_page(), resume_server, lead_receiver, "acme")
    link = _event(lead_receiver, sid, "lead.abandoned")["resume_url"]
    assert link.startswith(f"{resume_server.base}/r/")

    other = new_page()  # another device: its own storage, nothing of the chat
    other.goto(link)
    _pick_up_and_finish(other)
    assert other.url == f"{lead_receiver.origin}/quote-acme"  # the owner's page
    completed = _event(lead_receiver, sid, "lead.completed")
    fields = lead_fields(completed)
    assert fields["message"] == "Back from my phone" and fields["recovered_by"] == "link"

    # the link of a finished chat shows it as received, read-only
    again = new_page()
    again.goto(link)
    again.get_by_role("button", name="Start a new conversation").wait_for()
    assert not again.get_by_label("Type your message", exact=True).is_visible()


def test_a_link_of_a_site_open_to_any_origin_opens_our_chat_page(
    resume_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    sid = _leave_a_chat(new_page(), resume_server, lead_receiver, "open")
    link = _event(lead_receiver, sid, "lead.abandoned")["resume_url"]
    other = new_page()
    other.goto(link)
    _pick_up_and_finish(other)
    assert other.url == f"{link}/chat"
    assert other.locator("main h1").inner_text() == "Brightwater Plumbing"
    assert lead_fields(_event(lead_receiver, sid, "lead.completed"))["recovered_by"] == "link"


def test_a_dead_link_is_a_410_page(
    resume_server: ServerProcess, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    response = page.goto(f"{resume_server.base}/r/{'A' * 71}")
    assert response is not None and response.status == 410
    page.get_by_role("heading", name="This link has expired").wait_for()
