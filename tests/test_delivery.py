"""Delivery to a real receiver: retries, dead letters, replay, signing, guards."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from chatlead.outbox import Outbox
from chatlead.redis_client import connect_redis
from chatlead.store import Store
from standardwebhooks.webhooks import Webhook

from tests.conftest import (
    FULL_CONVERSATION,
    OLD_SECRET,
    SECRET,
    Receiver,
    RunningApp,
    Visitor,
    wait_for,
)


async def _complete(app: RunningApp) -> str:
    async with Visitor.connect(app.ws_url) as v:
        for name, value in FULL_CONVERSATION:
            await v.field(name, value)
        await v.expect("lead")
    return f"evt_{v.welcome['session_id']}_completed"


def _outbox(app: RunningApp) -> Outbox:
    return Outbox(app.server.config.app.state.runtime.store)  # type: ignore[union-attr]


async def _settled(app: RunningApp, event_id: str, status: str) -> Any:
    record, _ = await _outbox(app).load_with_session(event_id)
    return record if record is not None and record.status == status else None


async def _hooked(app_factory: Any, receiver: Receiver, **extra: Any) -> RunningApp:
    settings = {
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_allow_private": True,
    }
    return await app_factory(**{**settings, **extra})  # type: ignore[no-any-return]


async def test_failing_receiver_is_retried_on_schedule_then_delivered(
    app_factory: Any, receiver: Receiver
) -> None:
    app = await _hooked(app_factory, receiver, retry_schedule="0,0.5s,1s,1s")
    receiver.fail_next = 2
    event_id = await _complete(app)
    record = await wait_for(lambda: _settled(app, event_id, "delivered"), 10)
    assert [a["status_code"] for a in record.attempts] == [503, 503, 204]
    gaps = [
        (b["at"] - a["at"]) / 1000
        for a, b in zip(record.attempts, record.attempts[1:], strict=False)
    ]
    assert 0.4 <= gaps[0] <= 0.8 and 0.85 <= gaps[1] <= 1.4, gaps
    assert receiver.ids() == [event_id]
    # every attempt is signed afresh with the same id
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {event_id}


async def test_down_receiver_dead_letters_then_replays(app_factory: Any) -> None:
    receiver = Receiver().start()
    port = receiver.port
    receiver.stop()
    app = await app_factory(
        webhook_url=f"http://127.0.0.1:{port}/hook",
        webhook_secret=SECRET,
        webhook_allow_private=True,
        retry_schedule="0,0.2s,0.2s",
    )
    event_id = await _complete(app)
    record = await wait_for(lambda: _settled(app, event_id, "dead"), 10)
    assert len(record.attempts) == 3
    assert all(a["status_code"] is None and a["error"] for a in record.attempts)
    receiver.start(port)
    try:
        assert await _outbox(app).replay(event_id) == "ok"
        await wait_for(lambda: receiver.events, 5)
        record = await wait_for(lambda: _settled(app, event_id, "delivered"), 5)
        assert len(record.attempts) == 4
        assert receiver.ids() == [event_id]
    finally:
        receiver.stop()


async def test_permanent_4xx_and_redirects_dead_letter_at_once(
    app_factory: Any, receiver: Receiver
) -> None:
    app = await _hooked(app_factory, receiver)
    for status in (400, 302):
        receiver.fail_next, receiver.fail_status = 1, status
        event_id = await _complete(app)
        record = await wait_for(lambda eid=event_id: _settled(app, eid, "dead"), 5)
        assert [a["status_code"] for a in record.attempts] == [status]
    assert len(receiver.requests) == 2  # the redirect was not followed


async def test_retry_after_is_honoured(app_factory: Any, receiver: Receiver) -> None:
    app = await _hooked(app_factory, receiver, retry_schedule="0,0.1s,0.1s")
    receiver.fail_next, receiver.fail_status, receiver.retry_after = 1, 429, "1"
    event_id = await _complete(app)
    record = await wait_for(lambda: _settled(app, event_id, "delivered"), 10)
    gap = (record.attempts[1]["at"] - record.attempts[0]["at"]) / 1000
    assert gap >= 0.95, gap


async def test_slow_receiver_does_not_hold_up_other_leads(
    app_factory: Any, receiver: Receiver
) -> None:
    app = await _hooked(app_factory, receiver)
    receiver.delay = 1.0
    first = await _complete(app)
    second = await _complete(app)
    await wait_for(lambda: len(receiver.events) == 2, 5)
    assert sorted(receiver.ids()) == sorted([first, second])
    starts = sorted(r["at"] for r in receiver.requests)
    assert starts[1] - starts[0] < 0.9  # sent concurrently


async def test_two_secrets_during_rotation_sign_twice(app_factory: Any, receiver: Receiver) -> None:
    app = await _hooked(app_factory, receiver, webhook_secret=f"{SECRET},{OLD_SECRET}")
    receiver.secret = OLD_SECRET  # a receiver not yet switched to the new key
    await _complete(app)
    await wait_for(lambda: receiver.events, 5)
    request = receiver.requests[0]
    signatures = request["headers"]["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    Webhook(SECRET).verify(request["body"], request["headers"])  # and one switched already


async def test_private_targets_are_refused_unless_allowed(
    app_factory: Any, receiver: Receiver
) -> None:
    app = await app_factory(webhook_url=receiver.url, webhook_secret=SECRET)
    event_id = await _complete(app)
    record = await wait_for(lambda: _settled(app, event_id, "dead"), 5)
    assert "https" in record.attempts[0]["error"] or "public" in record.attempts[0]["error"]
    assert receiver.requests == []


async def test_abandoned_then_completed_arrive_in_order(
    app_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    app = await _hooked(app_factory, receiver, idle_timeout="1s", retry_schedule="0,0.3s,0.3s,0.3s")
    receiver.fail_next = 2  # the abandoned event needs retries...
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        await v.field("email", "ada@example.com")
        await v.expect("lead", timeout=5)
        await v.field("phone", "", frame_id="p")
        await v.field("message", "back again", frame_id="m")  # ...and completion comes meanwhile
        await v.expect("lead")
    await wait_for(lambda: len(receiver.events) == 2, 10)
    assert [e["type"] for e in receiver.events] == ["lead.abandoned", "lead.completed"]


async def test_test_event_is_delivered_signed(app_factory: Any, receiver: Receiver) -> None:
    app = await _hooked(app_factory, receiver)
    (event_id,) = await _outbox(app).add_test_event("default")
    app.server.config.app.state.runtime.delivery_wakeup.set()  # type: ignore[union-attr]
    await wait_for(lambda: receiver.events, 5)
    assert receiver.events[0]["id"] == event_id and receiver.events[0]["type"] == "lead.test"
    assert receiver.events[0]["data"]["fields"][0] == {"name": "name", "value": "Test Lead"}


async def test_a_lead_delivered_twice_is_in_the_inbox_once(redis_url: str, rds: Any) -> None:
    # a worker killed after pushing and before settling delivers the event again
    store = Store(connect_redis(redis_url), 16, 3600)
    try:
        lead = {"id": f"evt_{'ab' * 12}_completed", "type": "lead.completed", "site": "default"}
        assert await Outbox(store).push_inbox({**lead, "data": {}}) is True
        assert await Outbox(store).push_inbox({**lead, "data": {}}) is True
        assert len(await Outbox(store).inbox()) == 1
    finally:
        await store.aclose()
