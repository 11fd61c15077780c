"""A takeover in two real browsers (CONTRACT §10): a visitor in the widget on ``/demo``,
an agent signed in with its token on ``/admin/live``. The agent joins, both write, the
agent leaves and the bot finishes the flow; the lead's transcript names the agent.
Screenshots of both sides land in ``tests/artifacts/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import (
    ARTIFACTS,
    SITE,
    LeadReceiver,
    answer,
    check_axe,
    snap,
    stored,
    wait_lead,
    wait_settled,
    widget_eval,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = widget_parts.browser
chat_server = widget_parts.chat_server
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page


def _agent_token(server: ServerProcess) -> str:
    url = server.env["CHATLEAD_REDIS_URL"]
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        admin = client.get("chatlead:admin:token")
    finally:
        client.close()
    made = httpx.post(
        f"{server.base}/api/agents",
        json={"id": "ana", "name": "Ana Diaz", "sites": [SITE]},
        headers={"authorization": f"Bearer {admin}"},
        timeout=5,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def _widget_text(page: Any) -> str:
    return str(widget_eval(page, "return root.querySelector('.p').innerText"))


def test_an_agent_takes_over_in_the_console_and_gives_back(
    chat_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    visitor = new_page()
    visitor.goto(f"{chat_server.base}/demo?site={SITE}")
    visitor.get_by_role("button", name="Open chat").click()
    visitor.get_by_text("What's your name?").wait_for()
    answer(visitor, "Your name", "Ann Lee")
    visitor.get_by_label("Your email address", exact=True).wait_for()
    wait_settled(visitor)

    agent = new_page()
    agent.goto(f"{chat_server.base}/admin/login")
    agent.get_by_label("Agent token").fill(_agent_token(chat_server))
    agent.get_by_role("button", name="Sign in").click()
    agent.wait_for_url("**/admin/live")
    chat = agent.locator("#chats li").filter(has_text="Ann Lee")
    chat.first.wait_for()
    chat.first.locator("button, a").first.click()
    agent.locator("#join").click()
    agent.locator("#join").filter(has_text="Leave").wait_for()

    visitor.wait_for_function(
        "() => document.querySelector('chatlead-widget').shadowRoot"
        ".querySelector('.p').innerText.includes('Ana Diaz joined')"
    )
    answer(visitor, "Type your message", "Can someone come today?")
    agent.locator("#transcript").get_by_text("Can someone come today?").wait_for()
    reply = agent.locator("#reply-text")
    reply.fill("Yes — I can send someone at 3pm. <b>Does that work?</b>")
    reply.press("Enter")
    visitor.wait_for_function(
        "() => document.querySelector('chatlead-widget').shadowRoot"
        ".querySelector('.p').innerText.includes('I can send someone at 3pm')"
    )
    assert "What's the best email" in _widget_text(visitor)  # asked before the takeover
    snap(visitor, "takeover-visitor")
    agent.screenshot(path=str(ARTIFACTS / "console-takeover-agent.png"))
    check_axe(agent, "console with a joined chat")

    agent.locator("#join").click()  # Leave
    visitor.wait_for_function(
        "() => document.querySelector('chatlead-widget').shadowRoot"
        ".querySelector('.p').innerText.includes('Ana Diaz left')"
    )
    answer(visitor, "Your email address", "ann@example.com")
    visitor.get_by_text("And a phone number? (optional)").last.wait_for()
    visitor.get_by_role("button", name="Skip").click()
    visitor.get_by_role("button", name="Drain").click()
    answer(visitor, "Type your message", "Thanks!")
    visitor.get_by_role("button", name="Start a new conversation").wait_for()
    snap(visitor, "takeover-visitor-finished")

    lead = wait_lead(lead_receiver, stored(visitor)["sid"])
    said = [m for m in lead["data"]["transcript"] if m["from"].get("name") == "Ana Diaz"]
    assert [m["message"] for m in said] == [
        "Yes — I can send someone at 3pm. <b>Does that work?</b>"
    ]
    assert said[0]["from"]["id"] == "agent:ana"
