"""Format ``copper``: builders (pure), then delivery to a fake Copper and a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from chatlead.formats import Context, budget
from chatlead.formats import send as dispatch
from chatlead.formats.copper import (
    BUDGET_LIMIT,
    COPPER_BASE,
    build_upsert,
    lead_properties,
    parse_lead_id,
    send,
)
from chatlead.formats.transcript_text import TRUNCATED_MARKER
from fakes.copper import FakeCopper
from fakes.leads import event_for, lead, message, site_with

API_KEY = "cu_test_0123456789abcdef"
USER = "ops@acme.example"


def copper_site(url: str | None = None):
    return site_with(url=url, format="copper", copper_api_key=API_KEY, copper_user_email=USER)


# --- pure -----------------------------------------------------------------------


def test_headers_and_default_base():
    request = build_upsert(event_for(copper_site(), lead()))
    assert request.url == f"{COPPER_BASE}/leads/upsert"
    assert request.headers == {
        "X-PW-AccessToken": API_KEY,
        "X-PW-Application": "developer_api",
        "X-PW-UserEmail": USER,
        "Content-Type": "application/json",
    }


def test_with_email_upserts_matching_on_email():
    request = build_upsert(event_for(copper_site("https://crm.example/v1/"), lead()))
    assert (request.method, request.url) == ("PUT", "https://crm.example/v1/leads/upsert")
    assert request.json["match"] == {"field_name": "email", "field_value": "ada@example.com"}
    props = request.json["properties"]
    assert props["name"] == "Ada Lovelace"
    assert props["email"] == {"email": "ada@example.com", "category": "work"}
    assert props["status"] == "New"
    assert props["tags"] == ["chat-widget"]


def test_without_email_creates():
    request = build_upsert(event_for(copper_site(), lead({"phone_number": "(415) 555-0100"})))
    assert (request.method, request.url) == ("POST", f"{COPPER_BASE}/leads")
    assert request.json["phone_numbers"] == [{"number": "+14155550100", "category": "mobile"}]
    assert request.json["name"] == "Website visitor 3f9a1c2e"
    assert "email" not in request.json


def test_with_ref_id_updates_that_record_without_placeholders():
    the_lead = lead({"phone": "+14155550100"}, ref_id="8982702")
    request = build_upsert(event_for(copper_site(), the_lead))
    assert (request.method, request.url) == ("PUT", f"{COPPER_BASE}/leads/8982702")
    assert "name" not in request.json  # keep a name a sales person typed in Copper
    assert "status" not in request.json  # and the status they moved it to
    assert request.json["phone_numbers"][0]["number"] == "+14155550100"
    fresh = build_upsert(event_for(copper_site(), the_lead), use_ref=False)
    assert (fresh.method, fresh.json["name"]) == ("POST", "Website visitor 3f9a1c2e")


def test_abandoned_leads_are_tagged():
    props = lead_properties(event_for(copper_site(), lead(abandoned=True)))
    assert props["tags"] == ["chat-widget", "abandoned"]


def test_properties_use_aliases_and_visitor_company():
    the_lead = lead(
        {
            "first_name": "Grace",
            "last_name": "Hopper",
            "company": "Navy",
            "phonenumber": "+1 202 555 0123",
        }
    )
    props = lead_properties(event_for(copper_site(), the_lead))
    assert props["name"] == "Grace Hopper"
    assert props["company_name"] == "Navy"
    assert props["phone_numbers"] == [{"number": "+12025550123", "category": "mobile"}]


def test_details_hold_the_readable_transcript_capped():
    the_lead = lead()
    props = lead_properties(event_for(copper_site(), the_lead))
    assert props["details"].splitlines()[1] == "2026-11-23 14:02 UTC  Visitor: Ada Lovelace"
    the_lead["transcript"] = [message(i % 60, "z" * 500) for i in range(100)]
    details = lead_properties(event_for(copper_site(), the_lead))["details"]
    assert len(details) <= 10_000 and details.endswith(TRUNCATED_MARKER)


def test_parse_lead_id():
    assert parse_lead_id({"id": 8982702, "name": "x"}) == "8982702"
    assert parse_lead_id({"id": "abc"}) == "abc"
    assert parse_lead_id({"id": True}) is None
    assert parse_lead_id([]) is None


def test_budget_key_and_wait():
    key = budget.key("copper", API_KEY)
    assert key.startswith("chatlead:crm-budget:copper:") and len(key.rsplit(":", 1)[1]) == 16
    assert API_KEY not in key
    assert budget.wait(oldest=100.0, now=130.2, window=60) == 30.0
    assert budget.wait(oldest=100.0, now=160.5, window=60) == 1.0


# --- against the fake Copper ------------------------------------------------------


@pytest.fixture
def copper() -> Iterator[FakeCopper]:
    with FakeCopper(API_KEY, USER) as fake:
        yield fake


async def test_completed_lead_is_created(copper, http):
    result = await send(Context(http), event_for(copper_site(copper.base), lead()))
    assert result.ok and result.ref_id is not None
    [seen] = copper.seen
    assert (seen.method, seen.path) == ("PUT", "/developer_api/v1/leads/upsert")
    record = copper.leads[int(result.ref_id)]
    assert record["name"] == "Ada Lovelace" and record["status"] == "New"


async def test_abandoned_then_completed_updates_one_record(copper, http):
    site = copper_site(copper.base)
    first = await send(
        Context(http), event_for(site, lead({"phone": "+14155550100"}, abandoned=True))
    )
    assert first.ok and first.ref_id
    assert copper.leads[int(first.ref_id)]["tags"] == ["chat-widget", "abandoned"]

    # The visitor came back; the delivery loop carries the stored refId over.
    completed = lead(
        {"phone": "+14155550100", "name": "Ada Lovelace", "email": "ada@example.com"},
        ref_id=first.ref_id,
    )
    second = await send(Context(http), event_for(site, completed, "evt_2"))
    assert second.ok and second.ref_id == first.ref_id
    assert len(copper.leads) == 1
    record = copper.leads[int(first.ref_id)]
    assert record["name"] == "Ada Lovelace"
    assert record["email"] == {"email": "ada@example.com", "category": "work"}
    assert record["tags"] == ["chat-widget"]
    assert [(r.method, r.path) for r in copper.seen] == [
        ("POST", "/developer_api/v1/leads"),
        ("PUT", f"/developer_api/v1/leads/{first.ref_id}"),
    ]


async def test_same_email_is_the_same_lead(copper, http):
    site = copper_site(copper.base)
    a = await send(Context(http), event_for(site, lead(abandoned=True)))
    b = await send(Context(http), event_for(site, lead(), "evt_2"))
    assert a.ok and b.ok and a.ref_id == b.ref_id
    assert len(copper.leads) == 1


async def test_deleted_record_is_written_afresh_once(copper, http):
    site = copper_site(copper.base)
    first = await send(Context(http), event_for(site, lead()))
    copper.delete(int(first.ref_id))
    again = await send(Context(http), event_for(site, lead(ref_id=first.ref_id), "evt_2"))
    assert again.ok and again.ref_id != first.ref_id
    assert [r.method + " " + r.path.rsplit("/", 1)[1] for r in copper.seen[1:]] == [
        f"PUT {first.ref_id}",
        "PUT upsert",
    ]


async def test_wrong_credentials_are_dead_and_do_not_leak(copper, http):
    site = site_with(
        url=copper.base, format="copper", copper_api_key="cu_wrong_key", copper_user_email=USER
    )
    result = await send(Context(http), event_for(site, lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert "cu_wrong_key" not in (result.error or "") + result.response_snippet


async def test_429_without_rate_headers_is_retried_after_a_minute(copper, http):
    copper.fail_with_429(1)
    result = await send(Context(http), event_for(copper_site(copper.base), lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, True, 429)
    assert result.retry_after == 60.0
    assert copper.leads == {}
    retried = await send(Context(http), event_for(copper_site(copper.base), lead()))
    assert retried.ok


async def test_dispatcher_routes_copper_and_passes_redis(copper, http, redis):
    result = await dispatch(Context(http, redis), event_for(copper_site(copper.base), lead()))
    assert result.ok
    assert await redis.zcard(budget.key("copper", API_KEY)) == 1


async def send_many(http, site, count, redis=None):
    results = []
    for i in range(count):
        the_lead = lead({"name": f"Visitor {i}", "email": f"v{i}@example.com"})
        results.append(await send(Context(http, redis), event_for(site, the_lead, f"evt_{i}")))
    return results


async def test_without_budget_copper_itself_refuses_the_181st(http):
    with FakeCopper(API_KEY, USER, per_minute=BUDGET_LIMIT) as strict:
        results = await send_many(http, copper_site(strict.base), BUDGET_LIMIT + 1)
    assert all(r.ok for r in results[:-1])
    assert (results[-1].retryable, results[-1].status_code) == (True, 429)
    assert results[-1].retry_after == 60.0


async def test_budget_stops_the_181st_request_in_a_minute(http, redis):
    with FakeCopper(API_KEY, USER, per_minute=BUDGET_LIMIT) as strict:
        await _budget_stops_the_181st(http, redis, strict)


async def _budget_stops_the_181st(http, redis, copper):
    site = copper_site(copper.base)
    started = time.monotonic()
    results = await send_many(http, site, BUDGET_LIMIT, redis)
    assert all(r.ok for r in results)
    assert time.monotonic() - started < 50  # all inside one window
    over = await send(Context(http, redis), event_for(site, lead(), "evt_over"))
    assert (over.ok, over.retryable, over.status_code) == (False, True, None)
    assert over.retry_after is not None and 1 <= over.retry_after <= 60
    assert "budget" in (over.error or "")
    assert len(copper.seen) == BUDGET_LIMIT  # the 181st never reached Copper


async def test_budget_is_shared_by_workers(redis, redis_url):
    other_worker = aioredis.from_url(redis_url)
    key = budget.key("copper", API_KEY)
    try:
        granted = await asyncio.gather(
            *(budget.take(client, key, limit=10, window=60) for client in [redis, other_worker] * 8)
        )
        assert granted.count(None) == 10
        assert await redis.zcard(key) == 10  # refused requests leave no trace
        assert await redis.ttl(key) > 0
    finally:
        await other_worker.aclose()


async def test_budget_window_slides(redis):
    key = budget.key("copper", "another key")
    assert await budget.take(redis, key, limit=2, window=0.3) is None
    assert await budget.take(redis, key, limit=2, window=0.3) is None
    assert await budget.take(redis, key, limit=2, window=0.3) == 1.0
    deadline = time.monotonic() + 5
    while await budget.take(redis, key, limit=2, window=0.3) is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_no_redis_means_no_budget(copper, http):
    result = await send(Context(http, None), event_for(copper_site(copper.base), lead()))
    assert result.ok
