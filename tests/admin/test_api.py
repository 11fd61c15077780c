"""The admin API against the real server: uvicorn on port 0, real Redis (database
``CHATLEAD_API_TEST_DB``, default 14),
sessions driven over the real WebSocket protocol and abandoned by a 1 s idle timeout.

The server and the helpers are in ``tests/admin/serving.py``, the fixtures in
``tests/admin/conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from chatlead.admin.inbox import merge_newest
from chatlead.admin.index_merge import IndexMerge
from chatlead.admin.seed import seed
from chatlead.outbox import UNDATED, entry_ms
from chatlead.store import Store

from tests.admin.serving import (
    DELIVERY_KEYS,
    REDIS_URL,
    TOKEN,
    Served,
    come_back,
    csv_rows,
    eventually,
    flush_db,
    serve,
    visit,
    wait_delivery,
    wait_status,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.asyncio(loop_scope="module")

# --- the abandoned-lead report ----------------------------------------------------


async def test_report_rows_and_summary_from_real_sessions(served: Served) -> None:
    ada = await visit(served, [("name", "Ada Lovelace"), ("email", "ada@example.com")])
    bob = await visit(served, [("name", "Bob")])
    done = await visit(
        served,
        [("name", "Cy"), ("email", "cy@example.com"), ("phone", ""), ("message", "")],
    )
    await wait_status(served, ada, "abandoned")
    await wait_status(served, bob, "abandoned")
    await wait_delivery(served, f"evt_{ada}_abandoned_1", "delivered")

    answer = await served.http.get("/api/reports/abandoned")
    assert answer.status_code == 200
    report = answer.json()
    rows = {row["session_id"]: row for row in report["items"]}
    assert set(rows) == {ada, bob}
    assert done not in rows
    assert rows[ada]["email"] == "ada@example.com" and rows[ada]["name"] == "Ada Lovelace"
    assert rows[ada]["step"] == "phone" and rows[ada]["contactable"] is True
    assert rows[ada]["delivery"] == "delivered" and rows[ada]["recovered"] is False
    assert rows[bob]["step"] == "email" and rows[bob]["contactable"] is False
    assert rows[bob]["delivery"] == "none" and rows[bob]["email"] is None
    newest_first = [row["abandoned_at"] for row in report["items"]]
    assert newest_first == sorted(newest_first, reverse=True)

    summary = report["summary"]
    assert (summary["started"], summary["completed"], summary["abandoned"]) == (3, 1, 2)
    assert summary["abandonment_rate"] == round(2 / 3, 4)
    assert [(s["step"], s["reached"], s["stopped"]) for s in summary["drop_off"]] == [
        ("name", 3, 0),
        ("email", 3, 1),
        ("phone", 2, 1),
        ("message", 1, 0),
    ]
    assert sum(day["started"] for day in summary["daily"]) == 3
    assert report["next_cursor"] is None


async def test_recovered_session_is_flagged(served: Served) -> None:
    sid = await visit(served, [("name", "Dee"), ("email", "dee@example.com")])
    record = await wait_status(served, sid, "abandoned")
    assert record["recovered"] is False
    welcome = await come_back(served, sid, "Sorry, got distracted!")
    assert welcome["resumed"] is True and welcome["status"] == "abandoned"
    answer = await served.http.get("/api/reports/abandoned")
    (row,) = answer.json()["items"]
    assert row["recovered"] is True and row["status"] == "open"
    assert answer.json()["summary"]["recovered"] == 1


async def test_csv_export_is_spreadsheet_safe(served: Served) -> None:
    evil = await visit(
        served,
        [("name", '=HYPERLINK("http://evil.example")'), ("email", "eve@example.com")],
        texts=("call me at +1 202 555 0143",),
    )
    await wait_status(served, evil, "abandoned")
    answer = await served.http.get("/api/reports/abandoned", params={"format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith('attachment; filename="abandoned-all-')
    assert answer.text.startswith("\ufeff") and "\r\n" in answer.text
    (row,) = csv_rows(answer.text)
    assert row["session_id"] == evil
    assert row["name"] == '\'=HYPERLINK("http://evil.example")'
    assert row["phone"] == "'+12025550143"
    assert row["contactable"] == "yes"


async def test_pages_cover_every_row_once_in_order(served: Served, sync_redis: redis.Redis) -> None:
    seeded = seed(sync_redis, abandoned=230, completed=20, sites=["default"])
    assert seeded.abandoned == 230
    seen: list[str] = []
    stamps: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        body = (await served.http.get("/api/reports/abandoned", params=params)).json()
        seen += [row["session_id"] for row in body["items"]]
        stamps += [row["abandoned_at"] for row in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 230
    assert stamps == sorted(stamps, reverse=True)
    csv_answer = await served.http.get("/api/reports/abandoned?format=csv&site=default")
    assert [row["session_id"] for row in csv_rows(csv_answer.text)] == seen
    narrow = await served.http.get("/api/reports/abandoned", params={"since": "2h", "limit": 1000})
    assert len(narrow.json()["items"]) < 230


@pytest.mark.parametrize(
    ("path", "status", "param"),
    [
        ("/api/reports/abandoned?since=last+tuesday", 400, "since"),
        ("/api/reports/abandoned?until=2024-02-30", 400, "until"),
        ("/api/reports/abandoned?since=1999-01-01", 400, "since"),
        ("/api/reports/abandoned?since=2024-06-02&until=2024-06-01", 400, "since"),
        ("/api/reports/abandoned?format=xlsx", 400, "format"),
        ("/api/reports/abandoned?limit=100000", 400, "limit"),
        ("/api/reports/abandoned?cursor=Li4vLi4v", 400, "cursor"),
        ("/api/reports/abandoned?site=..%2F..%2Fetc", 404, "site"),
        ("/api/reports/abandoned?site=nope&format=csv", 404, "site"),
        ("/api/deliveries?status=lost", 400, "status"),
        ("/api/deliveries?cursor=%00%01", 400, "cursor"),
        ("/api/reports/summary?since=soon", 400, "since"),
        ("/api/reports/summary?site=nope", 404, "site"),
        ("/api/sessions?status=live", 400, "status"),
        ("/api/sessions?site=nope", 404, "site"),
        ("/api/sessions?cursor=bm9wZQ", 400, "cursor"),
        ("/api/inbox?status=done", 400, "status"),
        ("/api/inbox?kind=spam", 400, "kind"),
        ("/api/inbox?q=" + "x" * 101, 400, "q"),
        ("/api/inbox?cursor=evt_../x", 400, "cursor"),
        ("/api/inbox?limit=0", 400, "limit"),
    ],
)
async def test_bad_input_gets_a_clear_json_error(
    served: Served, path: str, status: int, param: str
) -> None:
    answer = await served.http.get(path)
    assert answer.status_code == status
    body = answer.json()
    assert body["param"] == param and body["message"].startswith(param)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/sessions/not-a-session"),
        ("GET", "/api/sessions/0123456789abcdef0123456Z"),
        ("GET", "/api/sessions/%2e%2e%2f%2e%2e%2fkeys"),
        ("DELETE", "/api/sessions/*"),
        ("GET", "/api/sessions/0123456789abcdef01234567"),
        ("GET", "/api/deliveries/evt_*"),
        ("GET", "/api/deliveries/evt_0123456789abcdef01234567_completed"),
        ("POST", "/api/deliveries/evt_0123456789abcdef01234567_test/replay"),
        ("POST", "/api/deliveries/..%2F..%2Fx/replay"),
        ("POST", "/api/sites/nope/test-event"),
        ("POST", "/api/inbox/evt_0123456789abcdef01234567_completed/handled"),
        ("DELETE", "/api/inbox/..%2F..%2Fx/handled"),
    ],
)
async def test_unknown_or_malformed_ids_are_404(served: Served, method: str, path: str) -> None:
    answer = await served.http.request(method, path)
    assert answer.status_code == 404


async def test_summary_is_the_dashboard_part_of_the_report(served: Served) -> None:
    await visit(
        served, [("name", "Gil"), ("email", "gil@example.com"), ("phone", ""), ("message", "")]
    )
    left = await visit(served, [("name", "Hana")])
    await wait_status(served, left, "abandoned")
    report = (await served.http.get("/api/reports/abandoned", params={"since": "7d"})).json()
    summary = (await served.http.get("/api/reports/summary", params={"since": "7d"})).json()
    assert summary == report["summary"]
    assert (summary["started"], summary["completed"], summary["abandoned"]) == (2, 1, 1)
    assert summary["sites"][0]["site"] == "default" and len(summary["daily"]) == 8


# --- session list and inbox -----------------------------------------------------


async def test_session_list_by_status_with_pages(served: Served) -> None:
    done = await visit(
        served, [("name", "Ida"), ("email", "ida@example.com"), ("phone", ""), ("message", "")]
    )
    left = await visit(served, [("name", "Jo"), ("email", "jo@example.com")])
    back = await visit(served, [("name", "Kai"), ("email", "kai@example.com")])
    for sid in (left, back):
        await wait_status(served, sid, "abandoned")
    await come_back(served, back, "Still there?")
    everything = (await served.http.get("/api/sessions")).json()
    assert set(everything) == {"items", "next_cursor"}
    assert [row["session_id"] for row in everything["items"]] == [back, left, done]
    first = everything["items"][0]
    assert first["status"] == "open" and first["recovered"] is True and first["name"] == "Kai"
    assert first["email"] == "kai@example.com" and first["step"] == "phone"

    def ids(answer: httpx.Response) -> list[str]:
        return [row["session_id"] for row in answer.json()["items"]]

    for status, expected in (("open", [back]), ("completed", [done]), ("abandoned", [left])):
        answer = await served.http.get("/api/sessions", params={"status": status})
        assert ids(answer) == expected, status
    page = await served.http.get("/api/sessions", params={"limit": 2})
    assert ids(page) == [back, left]
    rest = await served.http.get(
        "/api/sessions", params={"limit": 2, "cursor": page.json()["next_cursor"]}
    )
    assert ids(rest) == [done] and rest.json()["next_cursor"] is None
    old = await served.http.get(
        "/api/sessions", params={"until": "2024-01-01", "since": "2023-12-01"}
    )
    assert ids(old) == []


async def test_inbox_one_row_per_lead_with_marks_search_and_pages(served: Served) -> None:
    ada = await visit(served, [("name", "Ada"), ("email", "ada@example.com")])
    await wait_status(served, ada, "abandoned")
    await wait_delivery(served, f"evt_{ada}_abandoned_1", "delivered")
    abandoned_row = (await served.http.get("/api/inbox")).json()["items"][0]
    assert abandoned_row["event"] == "abandoned" and abandoned_row["status"] == "new"
    marked = await served.http.post(f"/api/inbox/evt_{ada}_abandoned_1/handled")
    assert marked.status_code == 200 and marked.json()["status"] == "handled"
    # she comes back and finishes: the newer event is one new lead, not two rows
    await come_back(served, ada, "Sorry, I'm back")
    for name, value in (("phone", "+1 202 555 0143"), ("message", "Quote for a <b>roof</b>")):
        await visit_answer(served, ada, name, value)
    await wait_delivery(served, f"evt_{ada}_completed", "delivered")
    bea = await visit(
        served,
        [("name", "Bea"), ("email", "bea@example.com"), ("phone", ""), ("message", "A new sink")],
    )
    await wait_delivery(served, f"evt_{bea}_completed", "delivered")
    test = (await served.http.post("/api/sites/default/test-event")).json()["id"]
    await wait_delivery(served, test, "delivered")

    async def inbox(**params: Any) -> list[dict[str, Any]]:
        answer = await served.http.get("/api/inbox", params=params)
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    rows = await inbox()
    assert [(r["name"], r["event"], r["status"]) for r in rows] == [
        ("Bea", "completed", "new"),
        ("Ada", "completed", "new"),
    ]
    assert rows[1]["need"] == "Quote for a <b>roof</b>" and rows[1]["phone"] == "+12025550143"
    assert rows[1]["session_id"] == ada and rows[1]["test"] is False
    assert rows[1]["last_message_at"].endswith("Z") and rows[1]["messages"] > 4
    (sample,) = await inbox(kind="tests")
    assert sample["id"] == test and sample["session_id"] is None and sample["test"] is True
    assert len(await inbox(kind="all")) == 3

    handled = await served.http.post(f"/api/inbox/evt_{bea}_completed/handled")
    assert handled.json()["handled_at"].endswith("Z")
    assert [r["name"] for r in await inbox(status="handled")] == ["Bea"]
    assert [r["name"] for r in await inbox(status="new")] == ["Ada"]
    reopened = await served.http.delete(f"/api/inbox/evt_{bea}_completed/handled")
    assert reopened.json() == {"id": f"evt_{bea}_completed", "status": "new", "handled_at": None}
    assert await inbox(status="handled") == []

    assert [r["name"] for r in await inbox(q="SINK")] == ["Bea"]
    assert [r["name"] for r in await inbox(q="ada@")] == ["Ada"]
    assert await inbox(q="nobody") == []
    first = (await served.http.get("/api/inbox", params={"limit": 1})).json()
    assert [r["name"] for r in first["items"]] == ["Bea"] and first["next_cursor"]
    second = (
        await served.http.get("/api/inbox", params={"limit": 1, "cursor": first["next_cursor"]})
    ).json()
    assert [r["name"] for r in second["items"]] == ["Ada"] and second["next_cursor"] is None


async def visit_answer(served: Served, session_id: str, name: str, value: str) -> None:
    """The visitor of ``session_id`` answers one more field."""
    field = {"type": "field", "id": f"late-{name}", "name": name, "value": value}
    await come_back(served, session_id, "", frame=field)


# --- deliveries -----------------------------------------------------------------


async def test_delivery_log_replay_and_test_event(served: Served) -> None:
    sid = await visit(
        served, [("name", "Fay"), ("email", "fay@example.com"), ("phone", ""), ("message", "Hi")]
    )
    event_id = f"evt_{sid}_completed"
    delivered = await wait_delivery(served, event_id, "delivered")
    assert set(delivered) == DELIVERY_KEYS
    (attempt,) = delivered["attempts"]
    assert set(attempt) == {"at", "status_code", "latency_ms", "error"}
    assert attempt["at"].endswith("Z") and delivered["next_attempt_at"] is None

    page = (await served.http.get("/api/deliveries")).json()
    assert set(page) == {"items", "next_cursor"}
    assert [item["id"] for item in page["items"]] == [event_id]
    assert set(page["items"][0]) == DELIVERY_KEYS
    assert (await served.http.get("/api/deliveries?status=dead")).json()["items"] == []

    replayed = await served.http.post(f"/api/deliveries/{event_id}/replay")
    assert replayed.status_code == 202
    assert replayed.json()["id"] == event_id

    async def twice() -> bool:
        item = (await served.http.get(f"/api/deliveries/{event_id}")).json()
        return item["status"] == "delivered" and len(item["attempts"]) == 2

    await eventually(twice, what="the replayed attempt")

    test = await served.http.post("/api/sites/default/test-event")
    assert test.status_code == 202 and test.json()["event"] == "lead.test"
    await wait_delivery(served, test.json()["id"], "delivered")
    inbox = (await served.http.get("/api/inbox", params={"kind": "all"})).json()
    assert {item["event"] for item in inbox["items"]} == {"completed", "test"}


async def test_replaying_a_pending_event_is_a_conflict(
    served: Served, sync_redis: redis.Redis
) -> None:
    seed(sync_redis, abandoned=40, completed=0, sites=["default"], rng_seed=3)
    pending = (await served.http.get("/api/deliveries?status=pending")).json()["items"]
    assert pending, "the seed leaves some events pending"
    assert all(item["status"] == "pending" for item in pending)
    answer = await served.http.post(f"/api/deliveries/{pending[0]['id']}/replay")
    assert answer.status_code == 409 and answer.json()["error"] == "already_pending"


async def test_delivery_pages_follow_the_cursor(served: Served, sync_redis: redis.Redis) -> None:
    seeded = seed(sync_redis, abandoned=300, completed=0, sites=["default"])
    ids: list[str] = []
    cursor = None
    while True:
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        body = (await served.http.get("/api/deliveries", params=params)).json()
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(ids) == len(set(ids)) == seeded.events
    dead: list[str] = []
    cursor = None
    while True:
        params = {"status": "dead", **({"cursor": cursor} if cursor else {})}
        body = (await served.http.get("/api/deliveries", params=params)).json()
        dead += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert dead and len(dead) == len(set(dead)) < seeded.events


# --- one session ------------------------------------------------------------------


async def test_session_detail_has_transcript_fields_and_lead(served: Served) -> None:
    sid = await visit(served, [("name", "Gus <b>"), ("email", "gus@example.com")])
    await wait_status(served, sid, "abandoned")
    detail = await wait_delivery(served, f"evt_{sid}_abandoned_1", "delivered")
    assert detail["session_id"] == sid
    body = (await served.http.get(f"/api/sessions/{sid}")).json()
    assert body["fields"] == {"name": "Gus <b>", "email": "gus@example.com"}
    assert body["page"]["utm_source"] == "ads"
    assert [entry["from"] for entry in body["transcript"][:3]] == ["bot", "bot", "visitor"]
    assert body["transcript"][2]["text"] == "Gus <b>" and body["transcript"][2]["field"] == "name"
    lead = body["lead"]
    assert lead["sessionId"] == sid and lead["isAbandoned"] is True
    assert {"name": "email", "value": "gus@example.com"} in lead["fields"]
    assert [d["event"] for d in body["deliveries"]] == ["lead.abandoned"]


# --- access -----------------------------------------------------------------------


async def test_token_is_required_and_compared_exactly(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}):
            answer = await anonymous.get("/api/deliveries", headers=headers)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in answer.text
        answer = await anonymous.get(
            "/api/deliveries", headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert answer.status_code == 200
        # the API description is public: it holds no data
        assert (await anonymous.get("/openapi.json")).status_code == 200


async def test_without_token_nothing_answers_without_the_generated_one() -> None:
    """No ADMIN_TOKEN: not even loopback gets in (a same-host proxy is loopback too)."""
    flush_db()
    async with serve(token=None) as running:
        async with httpx.AsyncClient(base_url=running.url) as anonymous:
            for path in ("/api/deliveries", "/admin", "/admin/inbox", "/metrics"):
                assert (await anonymous.get(path)).status_code == 401, path
            # what a reverse proxy on this host sends: its own Host, no X-Forwarded-For
            proxied = await anonymous.get("/api/deliveries", headers={"host": "shop.example"})
            assert proxied.status_code == 401
            assert (await anonymous.post("/api/sites/default/test-event")).status_code == 401
        token = running.http.headers["authorization"].removeprefix("Bearer ")
        assert len(token) >= 32
        assert (await running.http.get("/api/deliveries")).status_code == 200
        assert (await running.http.post("/api/sites/default/test-event")).status_code == 202


# --- the CLI mirrors the API --------------------------------------------------------


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "CHATLEAD_REDIS_URL": REDIS_URL, "CHATLEAD_IDLE_TIMEOUT": "1s"}
    env.pop("CHATLEAD_CONFIG", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatlead", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_report_and_deliveries(served: Served, sync_redis: redis.Redis) -> None:
    seed(sync_redis, abandoned=60, completed=10, sites=["default"])
    api_rows = (await served.http.get("/api/reports/abandoned", params={"limit": 1000})).json()
    code, out, _ = await _cli("report", "abandoned", "--since", "30d", "--format", "csv")
    assert code == 0
    assert [row["session_id"] for row in csv_rows(out)] == [
        row["session_id"] for row in api_rows["items"]
    ]
    code, out, _ = await _cli("report", "abandoned", "--format", "json", "--limit", "3")
    assert code == 0
    body = json.loads(out)
    assert body["summary"] == api_rows["summary"] and len(body["items"]) == 3
    code, out, _ = await _cli("deliveries", "list", "--status", "dead")
    dead = (await served.http.get("/api/deliveries?status=dead")).json()["items"]
    assert code == 0 and all(item["id"] in out for item in dead)
    code, out, _ = await _cli("test-event", "default")
    assert code == 0 and out.startswith("evt_")
    await wait_delivery(served, out.split(":")[0], "delivered")
    code, _, err = await _cli("report", "abandoned", "--since", "last week")
    assert code == 2 and "since:" in err


# --- the newest-first merge behind every page ---------------------------------------


async def test_index_merge_orders_ties_and_resumes_exactly() -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    store = Store(client, shards=5, retention_s=3600)
    try:
        await client.flushdb()
        expected: list[tuple[int, str, str]] = []
        for n in range(5):
            key = f"chatlead:{{{n}}}:idx:test"
            # few distinct scores, so most entries tie with others in and across sets
            members = {f"{n}{i:03d}": 1000 + (i * 7 + n) % 6 for i in range(137)}
            await client.zadd(key, members)
            expected += [(score, member, key) for member, score in members.items()]
        expected.sort(reverse=True)
        sources = [(f"chatlead:{{{n}}}:idx:test", f"chatlead:{{{n}}}:idx:test") for n in range(5)]

        merge = IndexMerge(store, sources, float("-inf"), float("inf"), page=10)
        got: list[tuple[int, str, str]] = []
        while batch := await merge.take(33):
            got += [entry[:3] for entry in batch]
        assert got == expected and merge.exhausted

        resumed: list[tuple[int, str, str]] = []
        cursor: tuple[int, str] | None = None
        while True:
            merge = IndexMerge(store, sources, 1001, 1004, page=7)
            if cursor:
                await merge.start_after(*cursor)
            batch = [entry[:3] for entry in await merge.take(25)]
            resumed += batch
            if not batch or merge.exhausted:
                break
            cursor = (batch[-1][0], batch[-1][1])
        assert resumed == [entry for entry in expected if 1001 <= entry[0] <= 1004]
    finally:
        await client.flushdb()
        await client.aclose()


# --- the inbox under a flood ---------------------------------------------------------


async def test_inbox_merge_keeps_newest_first() -> None:
    leads = [{"id": "l2", "at": 50}, {"id": "l1", "at": 10}]
    tests = [{"id": "t2", "at": 60}, {"id": "t1", "at": 5}]
    chunk, rest = merge_newest(leads, tests, last=False)
    assert [e["id"] for e in chunk] == ["t2", "l2", "l1"] and rest == [tests[1]]
    assert [e["id"] for e in merge_newest([], rest, last=True)[0]] == ["t1"]
    dated = {"data": {"transcript": [{"createdTime": "1970-01-01T00:00:01.000Z"}]}}
    assert entry_ms(dated) == 1000 and entry_ms({}) == UNDATED


async def test_a_flood_of_test_events_never_pushes_a_lead_out(served: Served) -> None:
    sid = await visit(served, [("name", "Rea"), ("email", "rea@example.com")], submit=True)
    await wait_delivery(served, f"evt_{sid}_completed", "delivered")
    queued = [
        (await served.http.post("/api/sites/default/test-event")).json()["id"] for _ in range(120)
    ]
    await wait_delivery(served, queued[-1], "delivered")
    leads = (await served.http.get("/api/inbox")).json()["items"]
    assert [row["session_id"] for row in leads] == [sid]
    tests = (await served.http.get("/api/inbox?kind=tests&limit=200")).json()["items"]
    assert len(tests) == 100
    everything = (await served.http.get("/api/inbox?kind=all&limit=200")).json()["items"]
    assert len(everything) == 101 and everything[-1]["session_id"] == sid
