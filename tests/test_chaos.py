"""Faults in the middle of traffic: many visitors at once, then a process or Redis dies.

Each visitor behaves like the widget: one frame in flight, resent with the same id
after any error or lost socket, resuming its session on whichever server answers.
Every test then checks what a site owner would check: every acked message is in
the stored transcript exactly once, seqs have no gaps, and every finished lead
reached the receiver under exactly one event id.
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

from tests.conftest import OwnRedis, Receiver, hook_env, wait_for

pytestmark = pytest.mark.slow

VISITORS = 20
MESSAGES = 15
ANSWERS = [("name", "Ada"), ("email", "ada@example.com"), ("phone", ""), ("message", "")]
RETRY_S = 0.1


@dataclass
class WidgetClient:
    """One visitor: sends its frames in order, each until it is acked."""

    name: str
    urls: list[str]
    session_id: str | None = None
    resume_token: str | None = None
    acked: dict[str, int] = field(default_factory=dict)
    connects: int = 0
    reconnects: int = 0
    _url: itertools.cycle[str] | None = None

    def frames(self) -> list[dict[str, Any]]:
        messages = [
            {"type": "message", "id": f"m{n}", "text": f"{self.name} says {n}"}
            for n in range(MESSAGES)
        ]
        fields = [
            {"type": "field", "id": f"f-{name}", "name": name, "value": value}
            for name, value in ANSWERS
        ]
        return messages + fields

    async def run(self, progress: asyncio.Queue[str], deadline_s: float = 60) -> None:
        async with asyncio.timeout(deadline_s):
            self._url = itertools.cycle(self.urls)
            ws = await self._connect()
            for frame in self.frames():
                while frame["id"] not in self.acked:
                    ws = await self._send_until_answered(ws, frame)
                progress.put_nowait(frame["id"])
            await ws.close()

    async def _send_until_answered(self, ws: Any, frame: dict[str, Any]) -> Any:
        try:
            await ws.send(json.dumps(frame))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("id") != frame["id"]:
                    continue
                if answer["type"] == "ack":
                    self.acked[frame["id"]] = answer["seq"]
                    return ws
                assert answer["type"] == "error", answer
                assert answer["code"] in ("unavailable", "rate_limited"), answer
                await asyncio.sleep(RETRY_S)
                return ws
        except (ConnectionClosed, OSError):
            return await self._connect()

    async def _connect(self) -> Any:
        """Open a socket and say hello (resuming), retrying until a server answers."""
        assert self._url is not None
        while True:
            url = next(self._url)
            try:
                ws = await websockets.connect(f"{url}?site=default", open_timeout=5)
                hello: dict[str, Any] = {"type": "hello", "site": "default"}
                if self.session_id:
                    hello |= {"session_id": self.session_id, "resume_token": self.resume_token}
                await ws.send(json.dumps(hello))
                welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if welcome["type"] == "welcome":
                    assert not self.session_id or welcome["resumed"], welcome
                    self.session_id = welcome["session_id"]
                    self.resume_token = welcome["resume_token"]
                    self.connects += 1
                    return ws
                await ws.close()
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                pass
            self.reconnects += 1
            await asyncio.sleep(RETRY_S)


async def _traffic(urls: list[str], fault: Any, at_fraction: float = 0.3) -> list[WidgetClient]:
    """Run every visitor to the end, calling ``fault()`` once part of the frames are acked."""
    clients = [WidgetClient(f"v{n}", urls) for n in range(VISITORS)]
    progress: asyncio.Queue[str] = asyncio.Queue()
    runs = [asyncio.create_task(client.run(progress)) for client in clients]
    total = VISITORS * (MESSAGES + len(ANSWERS))
    for _ in range(int(total * at_fraction)):
        await progress.get()
    await fault()
    await asyncio.gather(*runs)
    return clients


async def _check_stored(rds: aioredis.Redis, clients: list[WidgetClient]) -> None:
    """Every acked frame once in its transcript, at its acked seq; seqs 1..n; completed."""
    for client in clients:
        assert client.session_id is not None
        shard = keys.shard_of(client.session_id, 16)
        raw = await rds.lrange(keys.transcript(shard, client.session_id), 0, -1)
        entries = [json.loads(item) for item in raw]
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        visitor_texts = [e["text"] for e in entries if e["from"] == "visitor"]
        for n in range(MESSAGES):
            assert visitor_texts.count(f"{client.name} says {n}") == 1
        by_seq = {e["seq"]: e for e in entries}
        for frame_id, seq in client.acked.items():
            if frame_id.startswith("m"):
                assert by_seq[seq]["text"] == f"{client.name} says {frame_id[1:]}"
        status = await rds.hget(keys.session(shard, client.session_id), "status")
        assert status == "completed"


async def _check_delivered(receiver: Receiver, clients: list[WidgetClient]) -> None:
    """One lead.completed per visitor, under one event id (redeliveries share it)."""
    sessions = {client.session_id for client in clients}

    def delivered() -> set[str]:
        return {e["data"]["sessionId"] for e in receiver.events if e["type"] == "lead.completed"}

    await wait_for(lambda: delivered() == sessions, 30, interval=0.2)
    ids_by_session: dict[str, set[str]] = {}
    for event in receiver.events:
        ids_by_session.setdefault(event["data"]["sessionId"], set()).add(event["id"])
    assert all(len(ids) == 1 for ids in ids_by_session.values()), ids_by_session
    for event in receiver.events:
        transcript = event["data"]["transcript"]
        assert [m["attributes"]["seq"] for m in transcript] == list(range(1, len(transcript) + 1))


def _hook(receiver: Receiver) -> dict[str, str]:
    return hook_env(receiver, retry_schedule="0,0.2s,0.5s,1s,1s,1s,1s,1s,1s,1s")


async def test_sigkill_a_server_under_traffic(
    process_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    a = process_factory(**_hook(receiver)).start()
    b = process_factory(**_hook(receiver)).start()

    async def kill_a() -> None:
        a.kill()

    # everyone starts on a; when it dies, each visitor resumes on b and resends
    clients = await _traffic([a.ws_url, b.ws_url], kill_a)
    assert sum(c.connects for c in clients) > VISITORS  # visitors did move to b
    await _check_stored(rds, clients)
    await _check_delivered(receiver, clients)


async def test_restart_redis_under_traffic(
    own_redis: OwnRedis, app_factory: Any, receiver: Receiver
) -> None:
    app = await app_factory(redis_url=own_redis.url, **_hook(receiver))

    async def restart_redis() -> None:
        own_redis.kill()
        await asyncio.sleep(1)
        own_redis.start()

    clients = await _traffic([app.ws_url], restart_redis)
    assert sum(c.reconnects for c in clients) > 0  # the outage was felt
    rds = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        await _check_stored(rds, clients)
    finally:
        await rds.aclose()
    await _check_delivered(receiver, clients)


async def test_receiver_down_under_traffic(
    app_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    app = await app_factory(**_hook(receiver))
    port = receiver.port

    async def receiver_down() -> None:
        receiver.stop()

    clients = await _traffic([app.ws_url], receiver_down, at_fraction=0.1)
    await asyncio.sleep(1)  # leads finished while nobody was listening
    receiver.start(port)
    await _check_stored(rds, clients)
    await _check_delivered(receiver, clients)


async def test_sigkill_a_process_mid_delivery_under_traffic(
    process_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    receiver.delay = 1.0  # every delivery is in flight for a second
    a = process_factory(**_hook(receiver)).start()
    b = process_factory(**_hook(receiver))

    async def kill_a_mid_delivery() -> None:
        await wait_for(lambda: receiver.requests, 20, interval=0.02)  # a is sending
        a.kill()
        receiver.delay = 0
        b.start()

    clients = await _traffic([a.ws_url, b.ws_url], kill_a_mid_delivery, at_fraction=0)
    await _check_stored(rds, clients)
    await _check_delivered(receiver, clients)
    # what a had in flight was sent again, after its lease, under the same id
    event_keys = await rds.keys("chatlead:*e:evt_*_completed")
    assert len(event_keys) == VISITORS
    for key in event_keys:
        await wait_for(lambda key=key: _delivered(rds, key), 40, interval=0.5)
    assert len(receiver.events) > len({e["id"] for e in receiver.events})


async def _delivered(rds: aioredis.Redis, key: str) -> bool:
    return await rds.hget(key, "status") == "delivered"
