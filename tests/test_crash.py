"""Killing processes loses nothing: real server processes, SIGKILL, restart."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from chatlead.redis_client import connect_redis
from chatlead.store import Store

from tests.conftest import SECRET, Receiver, Visitor, hook_env, seed_sessions, wait_for

pytestmark = pytest.mark.slow


async def test_sigkill_after_ack_loses_nothing_acked(
    process_factory: Any, receiver: Receiver
) -> None:
    server = process_factory(**hook_env(receiver)).start()
    async with Visitor.connect(server.ws_url) as v:
        await v.field("name", "Ada")
        ack = await v.field("email", "ada@example.com")
        server.kill()
    assert ack["seq"] == 5
    server.start()
    resume = {"session_id": v.welcome["session_id"], "resume_token": v.welcome["resume_token"]}
    async with Visitor.connect(server.ws_url, **resume) as back:
        assert [m["seq"] for m in back.welcome["transcript"]] == [1, 2, 3, 4, 5, 6]
        assert {f["name"]: f["value"] for f in back.welcome["fields"]} == {
            "name": "Ada",
            "email": "ada@example.com",
        }
        # the widget resends what was not acked; acked ids are not duplicated
        assert (await back.field("email", "ada@example.com", frame_id="c2"))["seq"] == 5
        await back.field("phone", "", frame_id="p")
        await back.field("message", "hi", frame_id="m")
        await back.expect("lead")
    await wait_for(lambda: receiver.events, 10)
    lead = receiver.events[0]["data"]
    texts = [m["message"] for m in lead["transcript"]]
    assert texts.count("ada@example.com") == 1 and texts.count("Ada") == 1


async def test_undelivered_event_is_delivered_after_restart(
    process_factory: Any, rds: aioredis.Redis
) -> None:
    receiver = Receiver().start()
    port = receiver.port
    receiver.stop()  # the CRM is down
    receiver = Receiver()
    hook_url = f"http://127.0.0.1:{port}/hook"
    server = process_factory(
        webhook_url=hook_url,
        webhook_secret=SECRET,
        webhook_allow_private="true",
        retry_schedule="0,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
    ).start()
    async with Visitor.connect(server.ws_url) as v:
        for name, value in [("name", "Ada"), ("email", "a@b.co"), ("phone", ""), ("message", "x")]:
            await v.field(name, value)
        await v.expect("lead")
    event_key = (await rds.keys("chatlead:*e:evt_*_completed"))[0]
    await wait_for(lambda: rds.llen(event_key + ":attempts"), 10)
    server.kill()
    receiver.start(port)
    try:
        server.start()
        await wait_for(lambda: receiver.events, 15)
        assert receiver.ids() == [f"evt_{v.welcome['session_id']}_completed"]
        await wait_for(lambda: _status(rds, event_key, "delivered"), 5)
    finally:
        receiver.stop()


async def _status(rds: aioredis.Redis, key: str, status: str) -> bool:
    return await rds.hget(key, "status") == status


async def test_sweeper_processes_flag_each_session_exactly_once(
    process_factory: Any, redis_url: str, rds: aioredis.Redis
) -> None:
    """5 worker processes (sweeper + delivery) over 5,000 sessions, one SIGKILLed."""
    store = Store(connect_redis(redis_url), 16, 3600)
    try:
        ids = await seed_sessions(store, 5000, idle_ms=1500)
    finally:
        await store.redis.aclose()
    workers = [process_factory().start("worker") for _ in range(5)]
    await asyncio.sleep(1.6)
    workers[0].kill()  # mid-sweep or mid-delivery: loses nothing, duplicates nothing
    await wait_for(lambda: _count_delivered(rds, 5000), 60, interval=0.2)
    for worker in workers[1:]:
        worker.terminate()
    inbox = [item for item in await rds.lrange("chatlead:inbox", 0, -1)]
    assert len(inbox) == 5000  # real leads are kept for the retention, one per session
    events = [k for k in await rds.keys("chatlead:*e:evt_*") if not k.endswith(":attempts")]
    assert sorted(k.split("e:evt_")[1] for k in events) == sorted(f"{s}_abandoned_1" for s in ids)
    total = 0
    for key in await rds.keys("chatlead:*stats:default:*"):
        total += int(await rds.hget(key, "abandoned") or 0)
    assert total == 5000


async def _count_delivered(rds: aioredis.Redis, want: int) -> bool:
    keys = [k for k in await rds.keys("chatlead:*e:evt_*") if not k.endswith(":attempts")]
    if len(keys) < want:
        return False
    async with rds.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hget(key, "status")
        statuses = await pipe.execute()
    return statuses.count("delivered") == want


async def test_embedded_server_keeps_sessions_across_restarts(
    process_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / secrets.token_hex(3)
    server = process_factory(redis=None, data_dir=str(data)).start()
    async with Visitor.connect(server.ws_url) as v:
        await v.field("name", "Ada")
    server.terminate()
    assert (data / "appendonlydir").is_dir()
    server.start()
    resume = {"session_id": v.welcome["session_id"], "resume_token": v.welcome["resume_token"]}
    async with Visitor.connect(server.ws_url, **resume) as back:
        assert back.welcome["resumed"] is True
        assert back.welcome["fields"] == [{"name": "name", "value": "Ada"}]
    # a crashed chatlead leaves its embedded server behind; the next start stops it
    server.kill()
    server.start()
    async with Visitor.connect(server.ws_url, **resume) as again:
        assert again.welcome["resumed"] is True
    assert "redis_embedded dir=" in server.output()
    pid = int((data / "valkey.pid").read_text())
    server.terminate()
    # stopping chatlead stops its embedded server (no orphan left behind)
    await wait_for(lambda: not _alive(pid), 10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_server_killed_mid_conversation_visitor_moves_to_another(
    process_factory: Any, receiver: Receiver
) -> None:
    a = process_factory(**hook_env(receiver)).start()
    b = process_factory(**hook_env(receiver)).start()
    async with Visitor.connect(a.ws_url) as v:
        await v.field("name", "Ada")
        # sent, maybe stored, maybe acked: the process dies right now
        await v.send(
            {"type": "field", "id": "in-flight", "name": "email", "value": "ada@example.com"}
        )
        a.kill()
    resume = {
        "session_id": v.welcome["session_id"],
        "resume_token": v.welcome["resume_token"],
        "last_seq": 3,
    }
    async with Visitor.connect(b.ws_url, **resume) as back:
        ack = await back.field("email", "ada@example.com", frame_id="in-flight")  # resent
        assert ack == {"type": "ack", "id": "in-flight", "seq": 5}
        await back.field("phone", "", frame_id="p")
        await back.field("message", "hello", frame_id="m")
        await back.expect("lead")
    await wait_for(lambda: receiver.events, 10)
    lines = [m["message"] for m in receiver.events[0]["data"]["transcript"]]
    assert lines.count("ada@example.com") == 1 and lines.count("Ada") == 1
    assert [m["attributes"]["seq"] for m in receiver.events[0]["data"]["transcript"]] == list(
        range(1, 11)
    )
    await asyncio.sleep(0.5)
    assert len(receiver.events) == 1
