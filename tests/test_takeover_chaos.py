"""Taken-over chats while a server is SIGKILLed or Redis restarts (CONTRACT §10).

Visitors and their agents both write, each frame resent with its id until acked,
each side reconnecting to whichever server answers (the visitor resuming, the agent
re-joining). Then what both sides would check: every acked message of either side
is stored exactly once at its acked seq, seqs have no gaps, and each side has seen
every message of the other.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from chatlead import keys
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.agent_client import make_agent
from tests.conftest import OwnRedis
from tests.test_chaos import RETRY_S, WidgetClient

pytestmark = pytest.mark.slow

SESSIONS = 20
MESSAGES = 10


class HeldVisitor(WidgetClient):
    """A visitor that only writes messages (the chat stays open)."""

    def frames(self) -> list[dict[str, Any]]:
        return [
            {"type": "message", "id": f"m{n}", "text": f"{self.name} says {n}"}
            for n in range(MESSAGES)
        ]


@dataclass
class AgentWorker:
    """One agent holding one session: joins, writes its messages until each is acked."""

    name: str
    base_urls: list[str]
    token: str
    session_id: str
    acked: dict[str, int] = field(default_factory=dict)
    heard: set[int] = field(default_factory=set)
    last_seq: int = 0

    async def run(self, deadline_s: float = 60) -> None:
        urls = itertools.cycle(self.base_urls)
        async with asyncio.timeout(deadline_s):
            ws = await self._connect(urls)
            for n in range(MESSAGES):
                frame = {
                    "type": "message",
                    "id": f"a{n}",
                    "session_id": self.session_id,
                    "text": f"{self.name} answers {n}",
                }
                while frame["id"] not in self.acked:
                    try:
                        await ws.send(json.dumps(frame))
                        await self._until_answered(ws, frame["id"])
                    except (ConnectionClosed, OSError):
                        ws = await self._connect(urls)
                await asyncio.sleep(0.02)
            await ws.close()

    async def _until_answered(self, ws: Any, frame_id: str) -> None:
        while True:
            answer = json.loads(await ws.recv())
            self._heard(answer)
            if answer["type"] == "ack" and answer["id"] == frame_id:
                self.acked[frame_id] = answer["seq"]
                return
            if answer["type"] == "error":
                assert answer["code"] in ("unavailable", "rate_limited"), answer
                await asyncio.sleep(RETRY_S)
                return

    def _heard(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "message" and frame.get("session_id") == self.session_id:
            self.heard.add(frame["seq"])

    async def _connect(self, urls: Any) -> Any:
        while True:
            url = next(urls).replace("http://", "ws://") + "/agent"
            try:
                ws = await websockets.connect(
                    url, additional_headers={"Authorization": f"Bearer {self.token}"}
                )
                await ws.recv()  # hello
                await ws.send(json.dumps({"type": "join", "session_id": self.session_id}))
                return ws
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(RETRY_S)

    async def catch_up(self, base: str) -> None:
        """Join once more from the start: every message of the chat."""
        async with websockets.connect(
            base.replace("http://", "ws://") + "/agent",
            additional_headers={"Authorization": f"Bearer {self.token}"},
        ) as ws:
            await ws.recv()
            await ws.send(
                json.dumps({"type": "join", "session_id": self.session_id, "last_seq": 0})
            )
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self._heard(frame)
                if frame["type"] == "session":
                    return


async def _takeover_traffic(bases: list[str], redis_url: str, fault: Any) -> list[Any]:
    token = await make_agent(bases[-1], redis_url, "ana")
    ws_urls = [b.replace("http://", "ws://") + "/ws" for b in bases]
    visitors = [HeldVisitor(f"v{n}", ws_urls) for n in range(SESSIONS)]
    for visitor in visitors:  # a session each, taken over before the traffic
        visitor._url = itertools.cycle(ws_urls)
        await (await visitor._connect()).close()
    agents = [
        AgentWorker(f"a{n}", bases, token, v.session_id or "") for n, v in enumerate(visitors)
    ]
    progress: asyncio.Queue[str] = asyncio.Queue()
    runs = [asyncio.create_task(v.run(progress)) for v in visitors]
    runs += [asyncio.create_task(a.run()) for a in agents]
    for _ in range(SESSIONS * MESSAGES // 3):
        await progress.get()
    await fault()
    await asyncio.gather(*runs)
    return [visitors, agents]


async def _check(rds: aioredis.Redis, visitors: list[Any], agents: list[AgentWorker]) -> None:
    for visitor, agent in zip(visitors, agents, strict=True):
        shard = keys.shard_of(visitor.session_id, 16)
        raw = await rds.lrange(keys.transcript(shard, visitor.session_id), 0, -1)
        entries = [json.loads(item) for item in raw]
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        texts = [e["text"] for e in entries]
        by_seq = {e["seq"]: e for e in entries}
        for n in range(MESSAGES):
            assert texts.count(f"{visitor.name} says {n}") == 1
            assert texts.count(f"{agent.name} answers {n}") == 1
        for frame_id, seq in visitor.acked.items():
            assert by_seq[seq]["text"] == f"{visitor.name} says {frame_id[1:]}"
        for frame_id, seq in agent.acked.items():
            assert by_seq[seq]["text"] == f"{agent.name} answers {frame_id[1:]}"
        visitor_seqs = {e["seq"] for e in entries if e["from"] == "visitor"}
        assert visitor_seqs <= agent.heard  # the agent saw every visitor message


async def test_sigkill_a_server_during_takeovers(
    process_factory: Any, redis_url: str, rds: aioredis.Redis
) -> None:
    a, b = process_factory().start(), process_factory().start()

    async def kill_a() -> None:
        a.kill()

    visitors, agents = await _takeover_traffic([a.base, b.base], redis_url, kill_a)
    assert sum(v.connects for v in visitors) > 2 * SESSIONS  # visitors did move to b
    for agent in agents:
        await agent.catch_up(b.base)
    await _check(rds, visitors, agents)


async def test_restart_redis_during_takeovers(own_redis: OwnRedis, app_factory: Any) -> None:
    app = await app_factory(redis_url=own_redis.url)

    async def restart_redis() -> None:
        own_redis.kill()
        await asyncio.sleep(1)
        own_redis.start()

    visitors, agents = await _takeover_traffic([app.base], own_redis.url, restart_redis)
    assert sum(v.reconnects for v in visitors) > 0  # the outage was felt
    for agent in agents:
        await agent.catch_up(app.base)
    rds = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        await _check(rds, visitors, agents)
    finally:
        await rds.aclose()
