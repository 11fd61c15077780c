"""Spam defence (CONTRACT §12): the pure rules, then the real app on a real Redis with a
real receiver: a flagged session is stored, counted and listed apart, never forwarded
until released, and its visitor sees the normal thank-you."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.errors import ConfigError
from chatlead.site_config import load_sites
from chatlead.spam import Spam, answer_reason, hello_reason, is_disposable

from tests.conftest import (
    FULL_CONVERSATION,
    SECRET,
    Receiver,
    RunningApp,
    Visitor,
    admin_headers,
    settings_for,
    wait_for,
)

# --- the pure rules ------------------------------------------------------------------


def test_disposable_domains_and_the_domains_under_them() -> None:
    assert is_disposable("bot@mailinator.com")
    assert is_disposable("bot@Sub.Mailinator.COM.")
    assert not is_disposable("ada@gmail.com")
    assert not is_disposable("ada@example.com")
    assert not is_disposable("no-at-sign")


def test_which_rule_flags_what() -> None:
    on = Spam()
    assert hello_reason(on, "http://spam.example") == "honeypot"
    assert hello_reason(on, None) is None
    assert hello_reason(Spam(honeypot=False), "x") is None
    assert answer_reason(on, {"email": "bot@mailinator.com"}) == "disposable"
    assert answer_reason(on, {"email": "ada@gmail.com"}) is None
    assert answer_reason(on, {"name": "bot@mailinator.com"}) is None
    assert answer_reason(Spam(disposable=False), {"email": "bot@mailinator.com"}) is None
    assert Spam(min_fill="3s").min_fill_ms == 3000 and Spam().min_fill_ms == 0


def test_a_bad_spam_block_stops_the_start_naming_the_key(tmp_path: Path, redis_url: str) -> None:
    for block, key in (
        ("min_fill = 3", "min_fill"),
        ('min_fill = "soon"', "min_fill"),
        ('min_fill = "2h"', "min_fill"),
        ("max_leads_per_ip = 0", "max_leads_per_ip"),
        ("captcha = true", "captcha"),
    ):
        path = tmp_path / "bad.toml"
        path.write_text(f"[sites.acme.spam]\n{block}\n")
        with pytest.raises(ConfigError, match=rf"sites\.acme\.spam\.{key}"):
            load_sites(settings_for(redis_url, config=path))


# --- the real app ----------------------------------------------------------------------


async def _app(app_factory: Any, tmp_path: Path, receiver: Receiver, spam: str = "") -> RunningApp:
    path = tmp_path / "chatlead.toml"
    path.write_text(
        f"""
[sites.acme]
idle_timeout = "1s"
forward_abandoned = "always"

[[sites.acme.destinations]]
name = "crm"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true

[sites.acme.spam]
{spam}
"""
    )
    return await app_factory(config=path, webhook_allow_private=True)  # type: ignore[no-any-return]


async def _complete(app: RunningApp, email: str = "ada@example.com", **hello: Any) -> str:
    """A whole conversation; the visitor is thanked as usual. Its session id."""
    async with Visitor.connect(app.ws_url, site="acme", **hello) as v:
        for name, value in FULL_CONVERSATION:
            answer = await v.field(name, email if name == "email" else value)
            assert answer["type"] == "ack", answer
        if not any(f["type"] == "lead" for f in v.frames):
            assert (await v.expect("lead"))["status"] == "completed"
    return str(v.welcome["session_id"])


async def _flag(rds: aioredis.Redis, sid: str) -> str | None:
    return await rds.hget(keys.session(keys.shard_of(sid, 16), sid), "spam")  # type: ignore[no-any-return]


async def _quiet(receiver: Receiver, sid: str) -> None:
    """Nothing for ``sid`` reached the receiver (given time to)."""
    await asyncio.sleep(0.6)
    assert not [e for e in receiver.events if e["data"]["sessionId"] == sid]


async def test_a_filled_honeypot_is_kept_back_and_released_on_demand(
    app_factory: Any,
    tmp_path: Path,
    receiver: Receiver,
    rds: aioredis.Redis,
    http: httpx.AsyncClient,
    redis_url: str,
) -> None:
    app = await _app(app_factory, tmp_path, receiver)
    real = await _complete(app)
    bot = await _complete(app, hp="https://cheap-pills.example")
    await wait_for(lambda: any(e["data"]["sessionId"] == real for e in receiver.events), 10)
    await _quiet(receiver, bot)
    assert await _flag(rds, bot) == "honeypot" and await _flag(rds, real) is None
    auth = admin_headers(redis_url)
    summary = (await http.get(f"{app.base}/api/reports/summary?site=acme", headers=auth)).json()
    assert summary["spam"] == 1 and summary["completed"] == 2
    detail = (await http.get(f"{app.base}/api/sessions/{bot}", headers=auth)).json()
    assert detail["spam"] == "honeypot"
    listed = await http.get(f"{app.base}/api/sessions?site=acme&status=spam", headers=auth)
    assert [row["session_id"] for row in listed.json()["items"]] == [bot]  # listed apart
    # released: forwarded now, once
    answer = await http.post(f"{app.base}/api/sessions/{bot}/release", headers=auth)
    assert answer.status_code == 200 and answer.json() == {"session_id": bot, "released": True}
    await wait_for(lambda: any(e["data"]["sessionId"] == bot for e in receiver.events), 10)
    event = next(e for e in receiver.events if e["data"]["sessionId"] == bot)
    assert event["type"] == "lead.completed"
    listed = await http.get(f"{app.base}/api/sessions?site=acme&status=spam", headers=auth)
    assert listed.json()["items"] == []
    again = await http.post(f"{app.base}/api/sessions/{bot}/release", headers=auth)
    assert again.status_code == 409 and again.json()["error"] == "not_spam"
    assert (
        await http.post(f"{app.base}/api/sessions/{real}/release", headers=auth)
    ).status_code == 409
    unknown = await http.post(f"{app.base}/api/sessions/{'0' * 24}/release", headers=auth)
    assert unknown.status_code == 404
    assert (
        await http.post(f"{app.base}/api/sessions/nope/release", headers=auth)
    ).status_code == 404
    assert (await http.post(f"{app.base}/api/sessions/{bot}/release")).status_code == 401


async def test_a_disposable_address_is_held_but_the_defaults_flag_nothing_else(
    app_factory: Any, tmp_path: Path, receiver: Receiver, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, tmp_path, receiver)
    bot = await _complete(app, email="bot@mailinator.com")
    fast = await _complete(app)  # instant and from one IP: fine under the defaults
    again = await _complete(app)
    await wait_for(lambda: {fast, again} <= {e["data"]["sessionId"] for e in receiver.events}, 10)
    await _quiet(receiver, bot)
    assert await _flag(rds, bot) == "disposable"


async def test_instant_fills_and_one_network_past_its_leads(
    app_factory: Any, tmp_path: Path, receiver: Receiver, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, tmp_path, receiver, 'min_fill = "1h"')
    assert await _flag(rds, await _complete(app)) == "min_fill"
    tmp = tmp_path / "second"
    tmp.mkdir()
    app = await _app(app_factory, tmp, receiver, "max_leads_per_ip = 2")
    sids = [await _complete(app) for _ in range(3)]
    assert [await _flag(rds, sid) for sid in sids] == [None, None, "ip_rate"]


async def test_an_abandoned_spam_session_is_not_forwarded_until_released(
    app_factory: Any,
    tmp_path: Path,
    receiver: Receiver,
    rds: aioredis.Redis,
    http: httpx.AsyncClient,
    redis_url: str,
) -> None:
    app = await _app(app_factory, tmp_path, receiver)
    async with Visitor.connect(app.ws_url, site="acme", hp="x") as v:
        await v.field("name", "Bot")
        await v.field("email", "bot@example.com")
        assert (await v.expect("lead", timeout=5))["status"] == "abandoned"
    sid = v.welcome["session_id"]
    await _quiet(receiver, sid)
    auth = admin_headers(redis_url)
    assert (
        await http.post(f"{app.base}/api/sessions/{sid}/release", headers=auth)
    ).status_code == 200
    await wait_for(lambda: any(e["data"]["sessionId"] == sid for e in receiver.events), 10)
    assert next(e for e in receiver.events if e["data"]["sessionId"] == sid)["type"] == (
        "lead.abandoned"
    )
