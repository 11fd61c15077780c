"""REST hooks (CONTRACT §9): subscribe, list, unsubscribe; each hook gets its events
signed with its own secret; a target answering 410 Gone is unsubscribed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import SECRET, Receiver, Visitor, admin_headers, wait_for


async def _complete(app: Any) -> str:
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada Lovelace")
        await v.field("email", "ada@example.com")
        await v.field("phone", "")
        await v.field("message", "Boiler leaking")
        assert (await v.expect("lead"))["status"] == "completed"
    return str(v.welcome["session_id"])


@pytest.fixture
async def served(app_factory: Any, redis_url: str) -> Any:
    webhook = Receiver().start()
    app = await app_factory(
        webhook_url=webhook.url, webhook_secret=SECRET, webhook_allow_private=True
    )
    async with httpx.AsyncClient(base_url=app.base, headers=admin_headers(redis_url)) as api:
        yield app, api, webhook
    webhook.stop()


async def test_a_hook_gets_its_events_signed_with_its_own_secret(served: Any) -> None:
    app, api, webhook = served
    target = Receiver().start()
    try:
        made = await api.post(
            "/api/hooks", json={"target_url": target.url, "event": "lead.completed"}
        )
        assert made.status_code == 201
        created = made.json()
        assert set(created) == {"id", "secret"} and created["secret"].startswith("whsec_")
        target.secret = created["secret"]  # the receiver verifies with the hook's secret

        listed = (await api.get("/api/hooks")).json()["items"]
        assert [(h["id"], h["target_url"], h["event"], h["site"]) for h in listed] == [
            (created["id"], target.url, "lead.completed", None)
        ]
        assert "secret" not in listed[0]

        sid = await _complete(app)
        hook_event = f"evt_{sid}_completed:hook-{created['id']}"
        await wait_for(lambda: hook_event in target.ids(), 5)
        await wait_for(lambda: f"evt_{sid}_completed" in webhook.ids(), 5)
        assert target.rejected == 0
        assert target.events[0]["type"] == "lead.completed"
        assert target.events[0]["data"]["sessionId"] == sid

        gone = await api.delete(f"/api/hooks/{created['id']}")
        assert gone.status_code == 204
        assert (await api.get("/api/hooks")).json()["items"] == []
        later = await _complete(app)
        await wait_for(lambda: f"evt_{later}_completed" in webhook.ids(), 5)
        await asyncio.sleep(0.3)
        assert target.ids() == [hook_event]  # nothing after the unsubscribe
        assert (await api.delete(f"/api/hooks/{created['id']}")).status_code == 404
    finally:
        target.stop()


async def test_a_target_answering_410_is_unsubscribed(served: Any) -> None:
    app, api, _ = served
    target = Receiver(fail_next=100, fail_status=410).start()
    try:
        made = await api.post(
            "/api/hooks", json={"target_url": target.url, "event": "lead.completed"}
        )
        hook_id = made.json()["id"]
        sid = await _complete(app)
        await wait_for(lambda: len(target.requests) >= 1, 5)

        async def unsubscribed() -> bool:
            return (await api.get("/api/hooks")).json()["items"] == []

        for _ in range(50):
            if await unsubscribed():
                break
            await asyncio.sleep(0.1)
        assert await unsubscribed()
        item = (await api.get(f"/api/deliveries/evt_{sid}_completed:hook-{hook_id}")).json()
        assert item["status"] == "dead" and item["destination"] == f"hook-{hook_id}"
        assert "410" in item["attempts"][-1]["error"]
        assert len(target.requests) == 1  # never retried
    finally:
        target.stop()


async def test_a_hook_for_one_site_and_event(served: Any) -> None:
    _, api, _ = served
    made = await api.post(
        "/api/hooks",
        json={"target_url": "https://8.8.8.8/hook", "event": "lead.abandoned", "site": "default"},
    )
    assert made.status_code == 201
    listed = (await api.get("/api/hooks")).json()["items"]
    assert (listed[0]["event"], listed[0]["site"]) == ("lead.abandoned", "default")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"event": "lead.completed"}, 400, "target_url"),
        ({"target_url": "https://8.8.8.8/h"}, 400, "event"),
        ({"target_url": "https://8.8.8.8/h", "event": "lead.sold"}, 400, "event"),
        (
            {"target_url": "https://8.8.8.8/h", "event": "lead.completed", "site": "nope"},
            404,
            "site",
        ),
        (
            {"target_url": "https://8.8.8.8/h", "event": "lead.completed", "colour": 1},
            400,
            "colour",
        ),
        ({"target_url": "ftp://8.8.8.8/h", "event": "lead.completed"}, 400, "target_url"),
        ({"target_url": "hooks.example/x", "event": "lead.completed"}, 400, "target_url"),
        (["target_url"], 400, "body"),
    ],
)
async def test_bad_subscriptions_get_a_clear_error(
    served: Any, body: Any, status: int, param: str
) -> None:
    _, api, _ = served
    answer = await api.post("/api/hooks", json=body)
    assert answer.status_code == status
    assert answer.json()["param"] == param
    assert (await api.get("/api/hooks")).json()["items"] == []


async def test_private_targets_are_refused_unless_allowed(app_factory: Any, redis_url: str) -> None:
    app = await app_factory()
    async with httpx.AsyncClient(base_url=app.base, headers=admin_headers(redis_url)) as api:
        for url in (
            "http://127.0.0.1:9/h",
            "https://10.0.0.1/h",
            "https://[::1]/h",
            "https://no-such-host.invalid/h",
        ):
            answer = await api.post(
                "/api/hooks", json={"target_url": url, "event": "lead.completed"}
            )
            assert answer.status_code == 400, url
            assert answer.json()["param"] == "target_url"
        not_json = await api.post(
            "/api/hooks", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
        huge = await api.post(
            "/api/hooks",
            content=b"[" + b"1," * 600_000 + b"1]",
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
    async with httpx.AsyncClient(base_url=app.base) as anonymous:
        assert (await anonymous.get("/api/hooks")).status_code in (401, 403)
