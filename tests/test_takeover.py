"""Live takeover (CONTRACT §10) against the real app: an agent watches, joins, answers
and leaves; the visitor sees the agent, the bot stays silent and then resumes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets

from tests.agent_client import AgentClient, make_agent
from tests.conftest import Visitor, admin_headers, metric_value


def _sample_or_0(text: str, name: str) -> float:
    """A metric's sample, 0 when the process has not reported it yet (a labelled
    counter appears on its first increment)."""
    try:
        return metric_value(text, name)
    except AssertionError:
        return 0.0


def _admin(redis_url: str) -> str:
    return admin_headers(redis_url)["authorization"].removeprefix("Bearer ")


async def test_an_agent_takes_over_answers_and_gives_back(app_factory: Any, redis_url: str) -> None:
    app = await app_factory()
    async with httpx.AsyncClient(headers=admin_headers(redis_url)) as api:
        before = (await api.get(f"{app.base}/metrics")).text  # counters are per process
    token = await make_agent(app.base, redis_url, "ana")
    async with (
        Visitor.connect(app.ws_url) as visitor,
        AgentClient.connect(app.base, token) as agent,
    ):
        sid = visitor.welcome["session_id"]
        assert agent.hello["agent"] == {"id": "ana", "name": "Ana Diaz"}
        await agent.send({"type": "watch"})
        listed = await agent.expect("session", session_id=sid)
        assert listed["status"] == "open" and "agent" not in listed

        assert (await visitor.field("name", "Ada Lovelace"))["type"] == "ack"
        update = await agent.expect("session", session_id=sid)
        assert {"name": "name", "value": "Ada Lovelace"} in update["fields"]

        held = await agent.join(sid)
        assert held["agent"] == {"id": "ana", "name": "Ana Diaz"}
        joined = await visitor.expect("agent")
        assert joined == {"type": "agent", "status": "joined", "name": "Ana Diaz"}

        # the bot is silent while held; contact details still fill
        ack = await visitor.message("can someone come today? ada@example.com")
        assert ack["type"] == "ack"
        seen = await agent.expect("message", session_id=sid, seq=ack["seq"])
        assert seen["from"] == "visitor" and "today" in seen["text"]

        await agent.send({"type": "typing", "session_id": sid})
        assert await visitor.expect("typing") == {"type": "typing", "from": "agent"}
        said = await agent.say(sid, "Yes, at 3pm. <b>ok</b>?")
        assert said["type"] == "ack" and said["seq"] == ack["seq"] + 1
        reply = await visitor.expect("message")
        assert reply["from"] == "agent" and reply["name"] == "Ana Diaz"
        assert reply["seq"] == said["seq"] and reply["text"] == "Yes, at 3pm. <b>ok</b>?"
        bots = [f for f in visitor.frames if f["type"] == "message" and f["from"] == "bot"]
        assert all(f["seq"] < ack["seq"] for f in bots)  # the bot said nothing while held

        await agent.send({"type": "leave", "session_id": sid})
        left = await visitor.expect("agent")
        assert left["status"] == "left"
        ask = await visitor.expect("message")
        assert ask["from"] == "bot" and ask["seq"] == said["seq"] + 1  # the next step: phone
        assert (await visitor.field("phone", "+1 202 555 0143"))["type"] == "ack"
        bot = await visitor.expect("message")
        assert bot["from"] == "bot"
    async with httpx.AsyncClient(headers=admin_headers(redis_url)) as api:
        scraped = (await api.get(f"{app.base}/metrics")).text
    for name in (
        "chatlead_takeovers_total",
        'chatlead_messages_total{role="agent"}',
        "chatlead_agent_first_response_seconds_count",
    ):
        assert metric_value(scraped, name) - _sample_or_0(before, name) == 1, name


async def test_agent_refusals(app_factory: Any, redis_url: str) -> None:
    app = await app_factory()
    first = await make_agent(app.base, redis_url, "ana")
    second = await make_agent(app.base, redis_url, "ben")
    async with (
        Visitor.connect(app.ws_url) as visitor,
        AgentClient.connect(app.base, first) as ana,
        AgentClient.connect(app.base, second) as ben,
    ):
        sid = visitor.welcome["session_id"]
        said = await ana.say(sid, "hello")
        assert said["code"] == "not_joined"
        assert (await ana.join(sid))["agent"]["id"] == "ana"
        taken = await ben.join(sid)
        assert taken["type"] == "error" and taken["code"] == "taken"
        assert "Ana Diaz" in taken["message"]
        await ben.send({"type": "join", "session_id": "f" * 24})
        assert (await ben.expect("error"))["code"] == "session_closed"
        await ben.send({"type": "join", "session_id": "nope"})
        assert (await ben.expect("error"))["code"] == "bad_frame"
        await ben.send({"type": "dance"})
        assert (await ben.expect("error"))["code"] == "bad_frame"


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_a_foreign_origin_cannot_open_the_agent_socket(
    app_factory: Any, redis_url: str, origin: str
) -> None:
    app = await app_factory()
    url = app.base.replace("http://", "ws://") + "/agent"
    headers = {"Authorization": f"Bearer {_admin(redis_url)}"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers, origin=origin):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_no_credentials_no_socket(app_factory: Any) -> None:
    app = await app_factory()
    with pytest.raises(websockets.InvalidStatus):
        async with AgentClient.connect(app.base, "agt_wrong"):
            pass


async def test_an_agent_signs_in_with_its_token_to_the_console_only(
    app_factory: Any, redis_url: str
) -> None:
    app = await app_factory()
    token = await make_agent(app.base, redis_url, "ana")
    async with httpx.AsyncClient(base_url=app.base) as browser:
        page = await browser.get("/admin/login")
        csrf = page.cookies.get("chatlead_csrf") or browser.cookies.get("chatlead_csrf")
        signed = await browser.post(
            "/admin/login",
            data={"token": token, "csrf": csrf or ""},
            headers={"origin": app.base},
        )
        assert signed.status_code == 303, signed.text
        assert signed.headers["location"] == "/admin/live"
        cookie = browser.cookies.get("chatlead_agent")
        assert cookie and token not in cookie
        assert (await browser.get("/admin")).status_code in (303, 401)  # not the admin
    url = app.base.replace("http://", "ws://") + "/agent"
    headers = {"Cookie": f"chatlead_agent={cookie}"}
    async with websockets.connect(url, additional_headers=headers, origin=app.base) as ws:
        hello = json.loads(await ws.recv())
        assert hello["agent"]["id"] == "ana"
    forged = {"Cookie": f"chatlead_agent=ana.99999999999.{'0' * 64}"}
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url, additional_headers=forged, origin=app.base):
            pass
