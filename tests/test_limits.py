"""Connection caps shared by every server process (per client IP, per site)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from chatlead import keys
from chatlead.limits import ConnectionSlots
from chatlead.protocol import CloseCode
from chatlead.redis_client import connect_redis
from chatlead.store import Store
from websockets.exceptions import ConnectionClosed

from tests.conftest import Visitor, wait_for


@pytest.fixture
async def store(rds: aioredis.Redis, redis_url: str) -> AsyncIterator[Store]:
    store = Store(connect_redis(redis_url), 16, 3600)
    yield store
    await store.redis.aclose()


async def _refusal(url: str, hello: bool = True) -> tuple[list[dict[str, Any]], int]:
    """Frames received and the close code of a socket the server turns away."""
    frames: list[dict[str, Any]] = []
    async with websockets.connect(f"{url}?site=default") as ws:
        if hello:
            try:
                await ws.send(json.dumps({"type": "hello", "site": "default"}))
            except ConnectionClosed:
                pass  # refused before the hello arrived
        with pytest.raises(ConnectionClosed) as info:
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert info.value.rcvd is not None
    return frames, info.value.rcvd.code


async def test_the_ip_cap_holds_across_processes(app_factory: Any, rds: aioredis.Redis) -> None:
    a = await app_factory(max_conn_per_ip=3)
    b = await app_factory(max_conn_per_ip=3)
    async with Visitor.connect(a.ws_url), Visitor.connect(b.ws_url):
        async with Visitor.connect(a.ws_url):
            frames, code = await _refusal(b.ws_url)
            assert code == CloseCode.TOO_MANY
            assert [f["code"] for f in frames] == ["rate_limited"]
            frames, code = await _refusal(a.ws_url)
            assert code == CloseCode.TOO_MANY
        # a closed socket gives its slot back (once its server saw the close), to any
        # process
        await wait_for(lambda: _zcard(rds, keys.ip_slots("127.0.0.1"), 2), 5)
        async with Visitor.connect(b.ws_url) as v:
            assert v.welcome["status"] == "open"
    await wait_for(lambda: _zcard(rds, keys.ip_slots("127.0.0.1"), 0), 5)


async def _zcard(rds: aioredis.Redis, key: str, expected: int) -> bool:
    return await rds.zcard(key) == expected


async def test_the_site_cap_holds_across_processes(app_factory: Any, rds: aioredis.Redis) -> None:
    a = await app_factory(max_conn_per_site=2)
    b = await app_factory(max_conn_per_site=2)
    async with Visitor.connect(a.ws_url), Visitor.connect(b.ws_url):
        frames, code = await _refusal(a.ws_url)
        assert code == CloseCode.TOO_MANY
        assert frames[-1]["code"] == "rate_limited"
        assert await rds.zcard(keys.site_slots("default")) == 2
    await wait_for(lambda: _zcard(rds, keys.site_slots("default"), 0), 5)
    # the refused socket's IP slot was given back too
    await wait_for(lambda: _zcard(rds, keys.ip_slots("127.0.0.1"), 0), 5)


async def test_a_dead_process_frees_its_slots_within_a_lease(store: Store) -> None:
    dead = ConnectionSlots(store, lease_ms=300)  # never renews, never releases
    alive = ConnectionSlots(store, lease_ms=300)
    assert await dead.acquire("chatlead:conns:ip:test", dead.new_id(), 1)
    assert not await alive.acquire("chatlead:conns:ip:test", alive.new_id(), 1)
    await asyncio.sleep(0.4)
    assert await alive.acquire("chatlead:conns:ip:test", alive.new_id(), 1)


async def test_renewed_leases_keep_their_slots(store: Store) -> None:
    holder = ConnectionSlots(store, lease_ms=300)
    other = ConnectionSlots(store, lease_ms=300)
    held = holder.new_id()
    assert await holder.acquire("chatlead:conns:site:x", held, 1)
    for _ in range(3):
        await asyncio.sleep(0.2)
        await holder.renew_once()
    assert not await other.acquire("chatlead:conns:site:x", other.new_id(), 1)
    holder.release("chatlead:conns:site:x", held)
    await wait_for(lambda: other.acquire("chatlead:conns:site:x", other.new_id(), 1), 2)


async def test_a_released_slot_is_not_renewed_back(store: Store, rds: aioredis.Redis) -> None:
    slots = ConnectionSlots(store, lease_ms=5000)
    first, second = slots.new_id(), slots.new_id()
    assert await slots.acquire("chatlead:conns:ip:x", first, 5)
    assert await slots.acquire("chatlead:conns:ip:x", second, 5)
    slots.release("chatlead:conns:ip:x", first)
    await slots.renew_once()
    await wait_for(lambda: _zcard(rds, "chatlead:conns:ip:x", 1), 2)
    assert await rds.zscore("chatlead:conns:ip:x", second) is not None
