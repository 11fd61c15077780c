"""The rules of a takeover (CONTRACT §10) on the real app: holds lapse, seqs stay
whole when visitor and agent write at once, floods and oversized frames, a revoked
agent, sites an agent may not see, and ``visitor.waiting``."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from chatlead import keys

from tests.agent_client import AgentClient, make_agent
from tests.conftest import SECRET, Receiver, Visitor, admin_headers, wait_for


def _session_key(sid: str) -> str:
    return keys.session(keys.shard_of(sid, 16), sid)


async def test_a_hold_lapses_when_its_agent_is_gone(
    app_factory: Any, redis_url: str, rds: aioredis.Redis
) -> None:
    app = await app_factory()
    ana = await make_agent(app.base, redis_url, "ana")
    ben = await make_agent(app.base, redis_url, "ben")
    async with Visitor.connect(app.ws_url) as visitor:
        sid = visitor.welcome["session_id"]
        async with AgentClient.connect(app.base, ana) as agent:
            assert (await agent.join(sid))["agent"]["id"] == "ana"
            await visitor.expect("agent")
        # the socket is gone; 30 s later (moved back here) the hold has lapsed
        await rds.hset(_session_key(sid), "agent_seen", int(time.time() * 1000) - 31_000)
        ack = await visitor.field("name", "Ada Lovelace")
        assert ack["type"] == "ack"
        assert visitor.frames[-2] == {"type": "agent", "status": "left", "name": "Ana Diaz"}
        assert (await visitor.expect("message"))["from"] == "bot"  # the bot speaks again
        async with AgentClient.connect(app.base, ben) as other:
            assert (await other.join(sid))["agent"]["id"] == "ben"
            await visitor.expect("agent")
            await other.send({"type": "leave", "session_id": sid})
            assert (await visitor.expect("agent"))["status"] == "left"
    # a widget that was away when the agent left is told when it comes back
    resume = {"session_id": sid, "resume_token": visitor.welcome["resume_token"]}
    async with Visitor.connect(app.ws_url, **resume) as back:
        assert await back.expect("agent") == {"type": "agent", "status": "left", "name": "Ana Diaz"}


async def acked(client: Any, frame_id: str) -> None:
    while not any(f["type"] == "ack" and f["id"] == frame_id for f in client.frames):
        frame = await client.recv()
        assert frame["type"] != "error", frame


async def test_visitor_and_agent_writing_at_once_keep_every_seq(
    app_factory: Any, redis_url: str, rds: aioredis.Redis
) -> None:
    app = await app_factory(msg_rate=1000, msg_burst=1000)
    token = await make_agent(app.base, redis_url, "ana")
    async with (
        Visitor.connect(app.ws_url) as visitor,
        AgentClient.connect(app.base, token) as agent,
    ):
        sid = visitor.welcome["session_id"]
        await agent.join(sid)
        await visitor.expect("agent")
        n = 20
        for i in range(n):  # each pair sent in the same millisecond
            await asyncio.gather(
                visitor.send({"type": "message", "id": f"v{i}", "text": f"v{i}"}),
                agent.send({"type": "message", "id": f"a{i}", "session_id": sid, "text": f"a{i}"}),
            )
            await asyncio.gather(acked(visitor, f"v{i}"), acked(agent, f"a{i}"))
    shard = keys.shard_of(sid, 16)
    raw = await rds.lrange(keys.transcript(shard, sid), 0, -1)  # type: ignore[misc]
    entries = [json.loads(e) for e in raw]
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(1, len(entries) + 1))
    texts = {e["text"] for e in entries}
    assert {f"v{i}" for i in range(n)} <= texts and {f"a{i}" for i in range(n)} <= texts


async def test_floods_and_oversized_agent_frames(app_factory: Any, redis_url: str) -> None:
    app = await app_factory()
    token = await make_agent(app.base, redis_url, "ana")
    async with AgentClient.connect(app.base, token) as agent:
        await agent.send({"type": "message", "id": "x", "session_id": "a" * 24, "text": "x" * 4001})
        assert (await agent.expect("error"))["code"] == "bad_frame"
        await agent.ws.send("{" + " " * 20_000 + "}")
        await asyncio.wait_for(agent.ws.wait_closed(), 5)
        assert agent.ws.close_code == 1009
    async with AgentClient.connect(app.base, token) as agent:
        for _ in range(400):
            await agent.send({"type": "typing", "session_id": "a" * 24})
        with pytest.raises(websockets.ConnectionClosed):
            while True:  # read what it answered, up to the close
                await agent.recv()
        assert agent.ws.close_code == 4429


async def test_a_removed_agent_is_closed_at_once(app_factory: Any, redis_url: str) -> None:
    first, second = await app_factory(), await app_factory()
    token = await make_agent(first.base, redis_url, "ana")
    async with (
        AgentClient.connect(first.base, token) as here,
        AgentClient.connect(second.base, token) as there,
    ):
        async with httpx.AsyncClient(headers=admin_headers(redis_url)) as api:
            started = time.monotonic()
            assert (await api.delete(f"{first.base}/api/agents/ana")).status_code == 204
        await asyncio.wait_for(asyncio.gather(here.ws.wait_closed(), there.ws.wait_closed()), 1)
        assert time.monotonic() - started < 1
        assert here.ws.close_code == there.ws.close_code == 1008
    try:
        async with AgentClient.connect(first.base, token):
            raise AssertionError("a removed agent's token still opens the socket")
    except websockets.InvalidStatus:
        pass


async def test_an_agent_sees_only_its_sites(
    app_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "sites.toml"
    path.write_text("[sites.acme]\n\n[sites.other]\n")
    app = await app_factory(config=path)
    token = await make_agent(app.base, redis_url, "ana", sites=["acme"])
    async with (
        Visitor.connect(app.ws_url, site="other") as visitor,
        AgentClient.connect(app.base, token) as agent,
    ):
        await agent.send({"type": "watch", "sites": ["other"]})
        assert (await agent.expect("error"))["code"] == "forbidden"
        refused = await agent.join(visitor.welcome["session_id"])
        assert refused["code"] == "forbidden"


async def test_a_visitor_nobody_answers_raises_visitor_waiting(
    app_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    receiver = Receiver().start()
    path = tmp_path / "sites.toml"
    path.write_text(
        f"""
[sites.acme]
agent_wait = "1s"

[[sites.acme.destinations]]
name = "alerts"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true
events = ["visitor.waiting"]
"""
    )
    try:
        app = await app_factory(config=path)
        token = await make_agent(app.base, redis_url, "ana")
        async with (
            Visitor.connect(app.ws_url, site="acme") as visitor,
            AgentClient.connect(app.base, token) as agent,
        ):
            await agent.send({"type": "watch"})
            await visitor.message("anyone there?")
            await wait_for(lambda: len(receiver.events) >= 1, 10)
            event = receiver.events[0]
            assert event["type"] == "visitor.waiting"
            assert event["id"].startswith(f"evt_{visitor.welcome['session_id']}_waiting_1")
            await asyncio.sleep(1.5)
            assert len(receiver.events) == 1  # one per wait
    finally:
        receiver.stop()


async def test_a_finished_chat_cannot_be_joined_or_answered(
    app_factory: Any, redis_url: str
) -> None:
    app = await app_factory()
    token = await make_agent(app.base, redis_url, "ana")
    async with (
        Visitor.connect(app.ws_url) as visitor,
        AgentClient.connect(app.base, token) as agent,
    ):
        sid = visitor.welcome["session_id"]
        await agent.join(sid)
        await visitor.send({"type": "submit", "id": "done"})
        assert (await visitor.expect("lead"))["status"] == "completed"
        said = await agent.say(sid, "still there?")
        assert said["code"] == "session_closed"
        refused = await agent.join(sid)
        assert refused["code"] == "session_closed"
