"""Each destination's delivery health: the counters ``settle.lua`` keeps with every
outcome (and ``replay.lua`` with a dead letter queued again), the pure state and
aggregation, ``GET /api/destinations`` and what the delivery log and dashboard show,
against real receivers that fail, then succeed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.admin.health import ago, destination_health, health_state
from chatlead.outbox import Claim, Outbox
from chatlead.redis_client import connect_redis
from chatlead.sites import Destination
from chatlead.store import Store
from markupsafe import escape

from tests.conftest import SECRET, Receiver, RunningApp, Visitor, admin_headers, wait_for

HOUR_MS = keys.HEALTH_WINDOW_MS
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


# --- pure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("success", "failure", "failures", "dead", "state"),
    [
        (None, None, 0, 0, "idle"),
        (1000, None, 0, 0, "healthy"),
        (1000, 5000, 0, 0, "healthy"),  # failed more than an hour ago, nothing dead
        (None, 5000, 2, 0, "failing"),  # never delivered, failing now
        (1000, 5000, 2, 1, "failing"),
        (5000, 1000, 2, 0, "degraded"),  # failed this hour, delivered since
        (5000, 1000, 0, 1, "degraded"),  # a dead letter left, delivering again
        (None, None, 0, 1, "degraded"),  # dead letters only (times past the retention)
        (5000, 5000, 1, 0, "degraded"),  # same moment: not "after the last success"
    ],
)
def test_state_follows_the_numbers(
    success: int | None, failure: int | None, failures: int, dead: int, state: str
) -> None:
    assert health_state(success, failure, failures, dead) == state


def test_shards_add_up_to_one_destination() -> None:
    shares: list[Any] = [
        ({"ok": "1000", "fail": "3000", "error": "HTTP 503"}, 2, 1),
        ({}, 0, 0),
        ({"ok": "4000", "fail": "2000", "error": "timeout"}, 1, 0),
    ]
    health = destination_health("acme", Destination(name="crm", url="https://x.example"), shares)
    assert health.last_success_ms == 4000
    assert (health.last_failure_ms, health.last_error) == (3000, "HTTP 503")  # the latest's
    assert (health.failures_last_hour, health.dead_letters) == (3, 1)
    assert health.state == "degraded"
    assert health.format == "external-lead"
    idle = destination_health("acme", Destination(), [({}, 0, 0), ({}, 0, 0)])
    assert (idle.last_success_ms, idle.last_failure_ms, idle.last_error) == (None, None, None)
    assert idle.state == "idle"


def test_ago_reads_like_a_person() -> None:
    now = 10 * 86_400_000
    assert ago(None, now) == "never"
    assert ago(now - 20_000, now) == "just now"
    assert ago(now + 5_000, now) == "just now"  # another clock, a little ahead
    assert ago(now - 3 * 60_000 - 5_000, now) == "3 min ago"
    assert ago(now - 5 * HOUR_MS, now) == "5 h ago"
    assert ago(now - 3 * 86_400_000, now) == "3 days ago"


# --- settle.lua and replay.lua on a real Redis ---------------------------------------


async def _attempt(outbox: Outbox, outcome: str, error: str | None, code: int | None) -> str:
    (claim,) = await outbox.claim()
    attempt = {"status_code": code, "latency_ms": 3.0, "error": error, "response": ""}
    return await outbox.settle(claim, outcome, attempt)


async def test_settle_keeps_the_counters_in_the_event_shard(
    rds: aioredis.Redis, redis_url: str
) -> None:
    store = Store(connect_redis(redis_url), 4, 3600)
    try:
        outbox = Outbox(store)
        (event_id,) = await outbox.add_test_event("acme", [":crm"])
        shard = store.shard(keys.event_session(event_id))
        health = keys.destination_health(shard, "acme", "crm")
        failures = keys.destination_failures(shard, "acme", "crm")
        dead = keys.destination_dead(shard, "acme", "crm")

        assert await _attempt(outbox, "retry", "é" * 100, 503) == "ok"
        # cut to 120 bytes on a character boundary
        assert await rds.hget(health, "error") == "é" * 60
        assert await rds.hget(health, "ok") is None
        assert await rds.zcard(failures) == 1
        await _attempt(outbox, "dead", None, 503)
        assert await rds.hget(health, "error") == "HTTP 503"  # no text: the status
        assert await rds.zrange(dead, 0, -1) == [event_id]
        assert await rds.zrange(failures, 0, -1) == [f"{event_id}#1", f"{event_id}#2"]
        for key in (health, failures, dead):
            assert 0 < await rds.pttl(key) <= 3600_000
        assert await rds.pttl(failures) <= HOUR_MS

        assert await outbox.replay(event_id) == "ok"
        assert await rds.zcard(dead) == 0  # queued again: no longer a dead letter
        assert await _attempt(outbox, "delivered", None, 204) == "ok"
        assert int(await rds.hget(health, "ok") or 0) >= int(await rds.hget(health, "fail") or 0)
        assert await rds.zcard(failures) == 2
        # every health key is in the event's shard (one hash slot, Redis Cluster)
        assert {k async for k in rds.scan_iter("*health*")} <= {health, failures}
        assert all(k.startswith(keys.tag(shard)) for k in (health, failures, dead))

        # a lost lease: the attempt still counts, the outcome is not applied
        (second,) = await outbox.add_test_event("acme", [":crm"])
        await outbox.claim()
        attempt = {"status_code": 500, "latency_ms": 1, "error": "HTTP 500", "response": ""}
        assert await outbox.settle(Claim(second, "stale"), "dead", attempt) == "lost"
        other = store.shard(keys.event_session(second))
        assert await rds.zcard(keys.destination_failures(other, "acme", "crm")) >= 1
        assert await rds.zcard(keys.destination_dead(other, "acme", "crm")) == 0
    finally:
        await store.aclose()


# --- through the app: real receivers, the API and the pages --------------------------


def _config(tmp_path: Path, up: Receiver, flaky: Receiver, down: Receiver) -> Path:
    path = tmp_path / "sites.toml"
    destinations = "".join(
        f"""
[[sites.acme.destinations]]
name = "{name}"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true
events = {events}
"""
        for name, receiver, events in (
            ("up", up, '["lead.completed"]'),
            ("flaky", flaky, '["lead.completed"]'),
            ("down", down, '["lead.completed"]'),
            ("quiet", up, '["visitor.waiting"]'),
        )
    )
    path.write_text(f'[sites.acme]\nidle_timeout = "60s"\n{destinations}')
    return path


async def _health(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    answer = await http.get("/api/destinations?site=acme")
    assert answer.status_code == 200, answer.text
    return {item["destination"]: item for item in answer.json()["items"]}


async def _delivered(http: httpx.AsyncClient, event_id: str, status: str) -> bool:
    answer = await http.get(f"/api/deliveries/{event_id}")
    return answer.status_code == 200 and answer.json()["status"] == status


async def test_health_through_failures_dead_letters_and_replay(
    app_factory: Any, tmp_path: Path, redis_url: str, rds: aioredis.Redis
) -> None:
    up, flaky, down = Receiver(), Receiver(fail_next=1), Receiver(fail_next=1000, fail_status=500)
    for receiver in (up, flaky, down):
        receiver.start()
    try:
        app: RunningApp = await app_factory(
            config=_config(tmp_path, up, flaky, down), retry_schedule="0,0.1s"
        )
        async with Visitor.connect(app.ws_url, site="acme") as v:
            for name, value in (("name", "Ada"), ("email", "ada@example.com"), ("phone", "")):
                await v.field(name, value)
            await v.field("message", "Boiler leaking")
            await v.expect("lead")
        sid = str(v.welcome["session_id"])
        base = keys.completed_event(sid)
        async with httpx.AsyncClient(base_url=app.base, headers=admin_headers(redis_url)) as http:
            for suffix, status in (
                (":down", "dead"),
                (":flaky", "delivered"),
                (":up", "delivered"),
            ):
                await wait_for(lambda s=suffix, t=status: _delivered(http, base + s, t), 5)
            health = await _health(http)
            assert {name: h["state"] for name, h in health.items()} == {
                "up": "healthy",
                "flaky": "degraded",
                "down": "failing",
                "quiet": "idle",
            }
            assert health["down"]["failures_last_hour"] == 2
            assert health["down"]["dead_letters"] == 1
            assert health["down"]["last_success_ms"] is None
            assert health["down"]["last_error"] == "HTTP 500"
            assert health["flaky"]["failures_last_hour"] == 1
            assert health["flaky"]["last_success_ms"] > health["flaky"]["last_failure_ms"]
            assert health["up"]["format"] == "external-lead"

            page = (await http.get("/admin/deliveries")).text
            for state in ("healthy", "degraded", "failing", "idle"):
                assert f'<li class="dest {state}">' in page
            assert '<a href="/admin/deliveries?status=dead">1 dead letter</a>' in page
            assert "2 failures in the last hour" in page and "Never delivered" in page
            assert "Last success <time" in page and "data-ago>just now</time>" in page
            dashboard = (await http.get("/admin")).text
            for state in ("healthy", "degraded", "failing", "idle"):
                assert f'<span class="dot {state}" aria-hidden="true">' in dashboard
            assert "1 destination is failing:\n<strong>down</strong>." in dashboard

            # a failure older than the hour does not count, and the next failure trims it
            runtime = app.server.config.app.state.runtime  # type: ignore[union-attr]
            shard = runtime.store.shard(sid)
            failures = keys.destination_failures(shard, "acme", "down")
            now = int(time.time() * 1000)
            await rds.zadd(failures, {"evt_old#1": now - HOUR_MS - 60_000})
            assert (await _health(http))["down"]["failures_last_hour"] == 2

            # a replay gets one attempt (the schedule is used up): failing, dead again
            down.fail_next = 1
            assert (await http.post(f"/api/deliveries/{base}:down/replay")).status_code == 202
            await wait_for(
                lambda: len(down.requests) == 3 and _delivered(http, base + ":down", "dead"), 5
            )
            assert await rds.zscore(failures, "evt_old#1") is None  # trimmed by that failure
            health = await _health(http)
            assert (health["down"]["failures_last_hour"], health["down"]["dead_letters"]) == (3, 1)
            # fixed: replayed and delivered, no dead letter left
            assert (await http.post(f"/api/deliveries/{base}:down/replay")).status_code == 202
            await wait_for(lambda: _delivered(http, base + ":down", "delivered"), 5)
            health = await _health(http)
            assert health["down"]["dead_letters"] == 0
            assert health["down"]["failures_last_hour"] == 3
            assert health["down"]["state"] == "degraded"  # delivered since it failed
            page = (await http.get("/admin/deliveries")).text
            assert "status=dead" not in page.split('id="h-log"')[0]  # no dead-letter link

            # the last error is shown escaped, whatever it holds
            quiet = keys.destination_health(shard, "acme", "quiet")
            await rds.hset(quiet, mapping={"fail": now, "error": HOSTILE})
            page = (await http.get("/admin/deliveries")).text
            assert HOSTILE not in page and str(escape(HOSTILE)) in page

            unknown = await http.get("/api/destinations?site=nope")
            assert unknown.status_code == 404
            refused = await http.get("/api/destinations", headers={"authorization": "Bearer x"})
            assert refused.status_code == 401
    finally:
        for receiver in (up, flaky, down):
            receiver.stop()
