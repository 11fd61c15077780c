"""Real server -> fake Copper / Pulse: an abandoned visitor who comes back and
completes ends up as ONE CRM record, created then updated."""

from __future__ import annotations

from typing import Any

from fakes.copper import FakeCopper
from fakes.pulse import FakePulse

from tests.conftest import RunningApp, Visitor, wait_for


async def _abandon_then_complete(app: RunningApp) -> str:
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada Lovelace")
        await v.field("email", "ada@example.com")
        await v.expect("lead", timeout=5)  # abandoned
        await v.field("phone", "+1 202 555 0143", frame_id="back-1")
        await v.field("message", "Boiler leaking", frame_id="back-2")
        assert (await v.expect("lead"))["status"] == "completed"
    return str(v.welcome["session_id"])


async def test_copper_gets_one_lead_created_then_updated(app_factory: Any) -> None:
    with FakeCopper("copper-key", "owner@acme.example") as copper:
        app = await app_factory(
            idle_timeout="1s",
            webhook_format="copper",
            webhook_url=copper.base,
            webhook_allow_private=True,
            copper_api_key="copper-key",
            copper_user_email="owner@acme.example",
        )
        await _abandon_then_complete(app)
        await wait_for(lambda: len(copper.requests("PUT")) >= 2, 10)
        upsert, update = copper.requests("PUT")[:2]
        assert upsert.path.endswith("/leads/upsert")
        assert "abandoned" in upsert.json["properties"]["tags"]
        assert update.path.endswith(f"/leads/{next(iter(copper.leads))}")
        assert len(copper.leads) == 1
        record = next(iter(copper.leads.values()))
        assert record["phone_numbers"] == [{"number": "+12025550143", "category": "mobile"}]
        assert record["email"] == {"email": "ada@example.com", "category": "work"}


async def test_pulse_gets_one_lead_created_then_updated(app_factory: Any) -> None:
    with FakePulse("pulse-key", "pulse-secret", list_shape="data") as pulse:
        app = await app_factory(
            idle_timeout="1s",
            webhook_format="pulse",
            webhook_url=pulse.url,
            webhook_allow_private=True,
            pulse_api_key="pulse-key",
            pulse_api_secret="pulse-secret",
            pulse_team_id=7,
        )
        await _abandon_then_complete(app)
        await wait_for(lambda: pulse.requests("PATCH"), 10)
        assert len(pulse.requests("POST", "/leads")) == 1
        assert len(pulse.leads) == 1
        record = next(iter(pulse.leads.values()))
        assert (record["firstName"], record["lastName"]) == ("Ada", "Lovelace")
        assert record["phone"] == "+12025550143" and record["teamId"] == 7
        assert pulse.logins == 1  # the token was reused
