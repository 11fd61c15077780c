"""Abandonment: idle sessions flagged once, on Redis' clock, then recoverable."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis
from chatlead import keys
from chatlead.redis_client import connect_redis
from chatlead.store import Store
from chatlead.sweeper import Sweeper

from tests.conftest import Receiver, RunningApp, Visitor, seed_sessions, wait_for


async def _stats(rds: aioredis.Redis, site: str = "default") -> dict[str, int]:
    total: dict[str, int] = {}
    for key in await rds.keys(f"chatlead:*stats:{site}:*"):
        for field, value in (await rds.hgetall(key)).items():
            total[field] = total.get(field, 0) + int(value)
    return total


async def test_quiet_session_is_abandoned_told_and_delivered(
    app_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    from tests.conftest import SECRET

    app: RunningApp = await app_factory(
        idle_timeout="1s",
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        webhook_allow_private=True,
    )
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        await v.field("email", "ada@example.com")
        # pings keep the socket alive but are not visitor activity
        await v.send({"type": "ping"})
        lead = await v.expect("lead", timeout=5)
        assert lead == {
            "type": "lead",
            "status": "abandoned",
            "session_id": v.welcome["session_id"],
        }
        await wait_for(lambda: receiver.events, 5)
        abandoned = receiver.events[0]
        assert abandoned["type"] == "lead.abandoned"
        assert abandoned["data"]["isAbandoned"] is True
        assert {"name": "email", "value": "ada@example.com"} in abandoned["data"]["fields"]

        # the next visitor event reopens the session, flagged recovered
        await v.field("phone", "")
        await v.field("message", "still there")
        assert (await v.expect("lead"))["status"] == "completed"
    await wait_for(lambda: len(receiver.events) == 2, 5)
    completed = receiver.events[1]
    assert completed["type"] == "lead.completed" and completed["data"]["isAbandoned"] is False
    assert completed["data"]["sessionId"] == abandoned["data"]["sessionId"]
    assert receiver.ids() == [
        f"evt_{v.welcome['session_id']}_abandoned_1",
        f"evt_{v.welcome['session_id']}_completed",
    ]
    stats = await _stats(rds)
    assert stats["started"] == 1 and stats["abandoned"] == 1 and stats["recovered"] == 1
    assert stats["completed"] == 1 and stats["stop:phone"] == 1


async def test_resuming_an_abandoned_session_shows_it_without_reopening(
    app_factory: Any, rds: aioredis.Redis
) -> None:
    app = await app_factory(idle_timeout="1s")
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        await v.expect("lead", timeout=5)
    resume = {"session_id": v.welcome["session_id"], "resume_token": v.welcome["resume_token"]}
    async with Visitor.connect(app.ws_url, **resume) as back:
        assert back.welcome["status"] == "abandoned"
    async with Visitor.connect(app.ws_url, **resume) as again:
        assert again.welcome["status"] == "abandoned"
        await again.message("hello?", frame_id="back")
    async with Visitor.connect(app.ws_url, **resume) as reopened:
        assert reopened.welcome["status"] == "open"
    session = await rds.hgetall(
        keys.session(keys.shard_of(resume["session_id"], 16), resume["session_id"])
    )
    assert session["recovered"] == "1"


async def _abandon_with_policy(app_factory: Any, policy: str, email: bool) -> list[str]:
    app = await app_factory(idle_timeout="1s", forward_abandoned=policy)
    redis = app.server.config.app.state.runtime.store.redis  # type: ignore[union-attr]
    await redis.delete(keys.INBOX)
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        if email:
            await v.field("email", "ada@example.com")
        await v.expect("lead", timeout=5)
    await asyncio.sleep(0.5)
    inbox = await redis.lrange(keys.INBOX, 0, -1)
    return [json.loads(item)["type"] for item in inbox]


async def test_forward_policy_with_contact(app_factory: Any) -> None:
    assert await _abandon_with_policy(app_factory, "with-contact", email=False) == []
    assert await _abandon_with_policy(app_factory, "with-contact", email=True) == ["lead.abandoned"]


async def test_forward_policy_always_and_never(app_factory: Any) -> None:
    assert await _abandon_with_policy(app_factory, "always", email=False) == ["lead.abandoned"]
    assert await _abandon_with_policy(app_factory, "never", email=True) == []


async def test_session_keys_expire_after_retention(app: RunningApp, rds: aioredis.Redis) -> None:
    async with Visitor.connect(app.ws_url) as v:
        # free text first: the fields hash is created by a later event, inside the
        # minute in which the visitor script does not push TTLs forward again
        await v.message("hello there")
        await v.field("name", "Ada")
    session_id = v.welcome["session_id"]
    session_keys = await rds.keys(f"chatlead:*s:{session_id}*")
    assert len(session_keys) == 4  # session, fields, transcript, client ids
    for key in session_keys:
        ttl = await rds.pttl(key)
        assert 0 < ttl <= 30 * 86400 * 1000, key


async def test_concurrent_sweepers_flag_each_session_once(
    redis_url: str, rds: aioredis.Redis
) -> None:
    stores = [Store(connect_redis(redis_url), 16, 3600) for _ in range(4)]
    try:
        ids = await seed_sessions(stores[0], 2000, idle_ms=200)
        await asyncio.sleep(0.3)
        sweepers = [Sweeper(store) for store in stores]
        results = await asyncio.gather(*(s.sweep_once() for s in sweepers for _ in range(3)))
        flagged = [sid for result in results for sid in result.flagged]
        assert sorted(flagged) == sorted(ids)
        events = [k for k in await rds.keys("chatlead:*e:evt_*") if not k.endswith(":attempts")]
        assert len(events) == 2000
        assert (await _stats(rds))["abandoned"] == 2000
    finally:
        for store in stores:
            await store.redis.aclose()


async def test_activity_moves_the_deadline_and_abandonment_waits_for_it(
    app_factory: Any,
) -> None:
    """The deadline set is not updated on every message; the sweeper must re-check."""
    app: RunningApp = await app_factory(idle_timeout="1s")
    loop = asyncio.get_running_loop()
    async with Visitor.connect(app.ws_url) as v:
        for n in range(6):  # 3 s of activity: past the deadline the session was queued at
            assert (await v.message(f"still typing {n}"))["type"] == "ack"
            last = loop.time()  # the message was stored (by Redis' clock) just before this
            await asyncio.sleep(0.5)
            assert not [f for f in v.frames if f["type"] == "lead"]
        lead = await v.expect("lead", timeout=5)
        assert lead["status"] == "abandoned"
        # a full idle timeout after the last message (less the ack's way back to us)
        assert loop.time() - last >= 0.98
