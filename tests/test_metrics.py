from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import (
    FULL_CONVERSATION,
    RunningApp,
    Visitor,
    admin_headers,
    metric_value,
    wait_for,
)


async def test_metrics_count_what_happened(app: RunningApp, redis_url: str) -> None:
    async with Visitor.connect(app.ws_url) as v:
        for name, value in FULL_CONVERSATION:
            await v.field(name, value)
        async with httpx.AsyncClient(headers=admin_headers(redis_url)) as http:
            live = (await http.get(app.base + "/metrics")).text
        assert metric_value(live, "chatlead_connections") >= 1
    async with httpx.AsyncClient(headers=admin_headers(redis_url)) as http:

        async def delivered() -> str | None:
            text = (await http.get(app.base + "/metrics")).text
            return text if 'chatlead_delivery_attempts_total{outcome="delivered"}' in text else None

        text = await wait_for(delivered, 5)
    # labels are the protocol's frame types; every socket's hello is counted
    assert metric_value(text, 'chatlead_frames_total{type="field"}') >= 4
    assert metric_value(text, 'chatlead_frames_total{type="hello"}') >= 1
    assert metric_value(text, "chatlead_ack_seconds_count") >= 4
    assert metric_value(text, 'chatlead_sessions_total{event="completed"}') >= 1
    assert metric_value(text, "chatlead_outbox_depth") == 0
    assert metric_value(text, "chatlead_sessions_open") == 0


TOKEN = "metrics-scraper-token-0123456789abcdef"


async def test_metrics_need_the_admin_token_as_prometheus_sends_it(app_factory: Any) -> None:
    app = await app_factory(admin_token=TOKEN)
    async with httpx.AsyncClient(base_url=app.base) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and TOKEN not in wrong.text
        scrape = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scrape.status_code == 200 and "chatlead_outbox_depth" in scrape.text


async def test_public_metrics_need_no_token(app_factory: Any) -> None:
    app = await app_factory(admin_token=TOKEN, metrics_public=True)
    async with httpx.AsyncClient(base_url=app.base) as http:
        scrape = await http.get("/metrics")
    assert scrape.status_code == 200 and "chatlead_sessions_open" in scrape.text


async def test_metrics_answer_a_redis_outage_with_503(app_factory: Any, own_redis: Any) -> None:
    app = await app_factory(redis_url=own_redis.url)
    scraper = admin_headers(own_redis.url)
    async with httpx.AsyncClient(base_url=app.base, headers=scraper) as http:
        assert (await http.get("/metrics")).status_code == 200
        own_redis.kill()
        assert (await http.get("/metrics")).status_code == 503
