"""A takeover across two ``chatlead serve`` processes on one Redis (CONTRACT §10): the
visitor on one, the agent on the other; then the visitor's process is SIGKILLed and
the visitor resumes on the other one with nothing either side sent missing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.agent_client import AgentClient, make_agent
from tests.conftest import Visitor

pytestmark = pytest.mark.slow


async def test_visitor_and_agent_on_different_processes(
    process_factory: Any, redis_url: str
) -> None:
    one, two = process_factory().start(), process_factory().start()
    token = await make_agent(two.base, redis_url, "ana")
    async with AgentClient.connect(two.base, token) as agent:
        await agent.send({"type": "watch"})
        async with Visitor.connect(one.ws_url) as visitor:
            sid = visitor.welcome["session_id"]
            token_ = visitor.welcome["resume_token"]
            await agent.expect("session", session_id=sid)
            await agent.join(sid)
            assert (await visitor.expect("agent"))["status"] == "joined"
            ack = await visitor.message("is anyone there?")
            seen = await agent.expect("message", session_id=sid, seq=ack["seq"])
            assert seen["text"] == "is anyone there?"
            said = await agent.say(sid, "Hi, I'm Ana")
            got = await visitor.expect("message")
            assert (got["from"], got["seq"]) == ("agent", said["seq"])
            last_seen = got["seq"]

        # the visitor's process dies; the agent goes on writing meanwhile
        one.kill()
        missed = [await agent.say(sid, f"still here {i}") for i in range(3)]
        assert all(m["type"] == "ack" for m in missed)
        resume = {"session_id": sid, "resume_token": token_, "last_seq": last_seen}
        async with Visitor.connect(two.ws_url, **resume) as again:
            welcome = again.welcome
            assert welcome["resumed"] is True
            texts = [m["text"] for m in welcome["transcript"]]
            assert texts == [f"still here {i}" for i in range(3)]

            assert (await again.expect("agent"))["status"] == "joined"
            ack = await again.message("great, thanks", "after-resume")
            seen = await agent.expect("message", session_id=sid, seq=ack["seq"])
            assert seen["from"] == "visitor"
            await agent.send({"type": "leave", "session_id": sid})
            assert (await again.expect("agent"))["status"] == "left"
            assert (await again.expect("message"))["from"] == "bot"


async def test_an_agent_rejoining_gets_what_it_missed(process_factory: Any, redis_url: str) -> None:
    one, two = process_factory().start(), process_factory().start()
    token = await make_agent(one.base, redis_url, "ana")
    async with Visitor.connect(one.ws_url) as visitor:
        sid = visitor.welcome["session_id"]
        async with AgentClient.connect(two.base, token) as agent:
            await agent.join(sid)
            said = await agent.say(sid, "hello")
        two.kill()  # the agent's process dies; the hold outlives it
        acks = [await visitor.message(f"m{i}") for i in range(2)]
        async with AgentClient.connect(one.base, token) as agent:
            await agent.send({"type": "join", "session_id": sid, "last_seq": said["seq"]})
            replayed = [await agent.expect("message", session_id=sid) for _ in acks]
            assert [m["seq"] for m in replayed] == [a["seq"] for a in acks]
            assert not [
                f
                for f in visitor.frames
                if f["type"] == "message" and f["from"] == "bot" and f["seq"] > said["seq"]
            ]
    await asyncio.sleep(0)
