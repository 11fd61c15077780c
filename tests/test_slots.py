"""Appointment slots on real servers (CONTRACT §12, Slots): the offer in the prompt, a
booking held across two server processes, crafted and stale answers, and the lead."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from chatlead.errors import ConfigError
from chatlead.site_config import load_sites

from tests.conftest import SECRET, Receiver, Visitor, settings_for, wait_for

SITE = """
[sites.acme]
company = "Brightwater Plumbing"
idle_timeout = "1s"
availability_class_id = "site-default"

[[sites.acme.destinations]]
name = "crm"
url = "{hook}"
secret = "{secret}"
allow_private = true

[[sites.acme.flow]]
field = "service"
kind = "choice"
ask = "What do you need?"
options = [
  {{ label = "Leak repair", value = "leak", job_type_id = "plumbing-repair" }},
  "Something else",
]

[[sites.acme.flow]]
field = "appointment"
kind = "slot"
ask = "When should we come by?"
when = {{ field = "service", in = ["leak"] }}

[[sites.acme.flow]]
field = "name"
ask = "Your name?"

[sites.acme.availability]
timezone = "America/New_York"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-23:00"
slot = "1h"
lead_time = "2h"
horizon = "3d"
offer = 4
availability_class_id = "any-1h"
"""


def _config(tmp_path: Path, receiver: Receiver) -> Path:
    path = tmp_path / "chatlead.toml"
    path.write_text(SITE.format(hook=receiver.url, secret=SECRET))
    return path


async def _to_the_slot(url: str) -> tuple[Visitor, Any, dict[str, Any]]:
    """A visitor who chose leak repair; the slot prompt the bot sent."""
    context = Visitor.connect(url, site="acme")
    v = await context.__aenter__()
    assert (await v.field("service", "Leak repair"))["type"] == "ack"
    while True:
        message = await v.expect("message")
        if message.get("prompt", {}).get("kind") == "slot":
            return v, context, message["prompt"]


def test_a_slot_step_needs_an_availability_block(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[sites.acme]\n[[sites.acme.flow]]\nfield = "appointment"\nkind = "slot"\nask = "When?"\n'
    )
    with pytest.raises(ConfigError, match=r"sites\.acme\.flow\.0\.kind"):
        load_sites(settings_for(redis_url, config=path))
    path.write_text('[sites.acme.availability]\ntimezone = "Mars/Base"\n')
    with pytest.raises(ConfigError, match=r"sites\.acme\.availability\.timezone"):
        load_sites(settings_for(redis_url, config=path))


async def test_two_visitors_on_two_processes_cannot_book_the_same_slot(
    process_factory: Any, tmp_path: Path, receiver: Receiver
) -> None:
    env = {"config": str(_config(tmp_path, receiver)), "webhook_allow_private": "true"}
    a, b = process_factory(**env).start(), process_factory(**env).start()
    (ann, ann_ctx, ann_offer), (bob, bob_ctx, bob_offer) = await asyncio.gather(
        _to_the_slot(a.ws_url), _to_the_slot(b.ws_url)
    )
    try:
        assert len(ann_offer["options"]) == 4 and ann_offer["options"] == bob_offer["options"]
        first = ann_offer["options"][0]
        assert set(first) == {"label", "value"} and first["value"].endswith("Z")
        # both pick the first slot at once: one holds it, the other is offered the rest
        answers = await asyncio.gather(
            ann.field("appointment", first["value"]), bob.field("appointment", first["value"])
        )
        kinds = sorted(answer["type"] for answer in answers)
        assert kinds == ["ack", "error"]
        refused = next(answer for answer in answers if answer["type"] == "error")
        assert refused["code"] == "invalid_field"
        again = [o["value"] for o in refused["prompt"]["options"]]
        assert first["value"] not in again and len(again) == 4
        loser = ann if answers[0]["type"] == "error" else bob
        assert (await loser.field("appointment", again[0]))["type"] == "ack"
        # a third visitor is offered neither
        carl, carl_ctx, carl_offer = await _to_the_slot(a.ws_url)
        offered = {o["value"] for o in carl_offer["options"]}
        assert first["value"] not in offered and again[0] not in offered
        # crafted answers: off the grid, too soon, not a time
        for crafted in ("2020-01-01T00:00:00Z", first["value"][:-4] + "30:00Z", "tomorrow"):
            answer = await carl.field("appointment", crafted)
            assert answer["type"] == "error" and answer["code"] == "invalid_field", crafted
        await carl_ctx.__aexit__(None, None, None)
        winner = bob if loser is ann else ann
        assert (await winner.field("name", "Ada"))["type"] == "ack"
        await winner.send({"type": "submit", "id": "done"})
        await winner.expect("lead")
    finally:
        await ann_ctx.__aexit__(None, None, None)
        await bob_ctx.__aexit__(None, None, None)
    await wait_for(lambda: any(e["type"] == "lead.completed" for e in receiver.events), 10)
    lead = next(e for e in receiver.events if e["type"] == "lead.completed")["data"]
    fields = {f["name"]: f["value"] for f in lead["fields"]}
    assert fields["appointment"] == first["value"]
    assert lead["availabilityClassId"] == "any-1h" and lead["jobTypeId"] == "plumbing-repair"
    said = [m["message"] for m in lead["transcript"]]
    assert first["label"] in said  # the transcript reads as the visitor saw it


async def test_an_abandoned_visitors_slot_is_offered_again(
    app_factory: Any, tmp_path: Path, receiver: Receiver
) -> None:
    app = await app_factory(config=_config(tmp_path, receiver), webhook_allow_private=True)
    v, ctx, offer = await _to_the_slot(app.ws_url)
    first = offer["options"][0]["value"]
    assert (await v.field("appointment", first))["type"] == "ack"
    assert (await v.expect("lead", timeout=5))["status"] == "abandoned"
    await ctx.__aexit__(None, None, None)
    w, w_ctx, again = await _to_the_slot(app.ws_url)
    try:
        assert again["options"][0]["value"] == first
        assert (await w.field("appointment", first))["type"] == "ack"
    finally:
        await w_ctx.__aexit__(None, None, None)


async def test_erasing_a_session_gives_up_its_slot(
    app_factory: Any, tmp_path: Path, receiver: Receiver, redis_url: str
) -> None:
    import httpx
    import redis.asyncio as aioredis
    from chatlead import keys

    from tests.conftest import admin_headers

    app = await app_factory(config=_config(tmp_path, receiver), webhook_allow_private=True)
    v, ctx, offer = await _to_the_slot(app.ws_url)
    first = offer["options"][0]["value"]
    try:
        assert (await v.field("appointment", first))["type"] == "ack"
    finally:
        await ctx.__aexit__(None, None, None)
    sid = v.welcome["session_id"]
    rds = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await rds.get(keys.booking("acme", first)) == sid
        async with httpx.AsyncClient() as http:
            erased = await http.delete(
                f"{app.base}/api/sessions/{sid}", headers=admin_headers(redis_url)
            )
        assert erased.status_code == 200
        assert await rds.get(keys.booking("acme", first)) is None
    finally:
        await rds.aclose()


async def test_a_changed_slot_gives_the_first_one_up(
    app_factory: Any, tmp_path: Path, receiver: Receiver, redis_url: str
) -> None:
    import redis.asyncio as aioredis
    from chatlead import keys

    app = await app_factory(config=_config(tmp_path, receiver), webhook_allow_private=True)
    v, ctx, offer = await _to_the_slot(app.ws_url)
    first, second = (o["value"] for o in offer["options"][:2])
    rds = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert (await v.field("appointment", first))["type"] == "ack"
        assert (await v.field("appointment", second))["type"] == "ack"  # re-answered
        sid = v.welcome["session_id"]
        assert await rds.get(keys.booking("acme", second)) == sid
        assert await rds.get(keys.booking("acme", first)) is None
    finally:
        await rds.aclose()
        await ctx.__aexit__(None, None, None)
