"""Consent (CONTRACT §12): the pure rules, then the real app on a real Redis: nothing is
stored before a required consent, the lead carries what was agreed, and reminders
go only to visitors who ticked the marketing opt-in."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.consent import Consent, consent_updates, marketing_allowed, needs_consent, offer
from chatlead.errors import ConfigError, FieldInvalid, FrameError
from chatlead.protocol import ConsentGiven, iso_ms, parse_client_frame
from chatlead.site_config import load_sites

from tests.conftest import ROOT, SECRET, Receiver, RunningApp, Visitor, settings_for, wait_for
from tests.test_formats_email import Smtpd

NOTICE = Consent(text="We keep this chat to answer you.", version="2026-01", marketing="Email me")


# --- the pure rules ------------------------------------------------------------------


def test_the_offer_until_agreed() -> None:
    assert offer(NOTICE, {}) == {
        "text": "We keep this chat to answer you.",
        "version": "2026-01",
        "required": True,
        "marketing": "Email me",
    }
    assert offer(NOTICE, {"consent": "2026-01"}) is None
    assert offer(None, {}) is None
    assert "marketing" not in offer(NOTICE.model_copy(update={"marketing": None}), {})  # type: ignore[operator]


def test_what_must_be_agreed_first() -> None:
    assert needs_consent(NOTICE, {})
    assert not needs_consent(NOTICE, {"consent": "2026-01"})
    assert not needs_consent(NOTICE.model_copy(update={"required": False}), {})
    assert not needs_consent(None, {})


def test_what_a_consent_stores() -> None:
    assert consent_updates(NOTICE, "2026-01", True) == {
        "consent": "2026-01",
        "marketing_consent": "true",
    }
    assert consent_updates(NOTICE, "2026-01", False)["marketing_consent"] == "false"
    # a site that offers no opt-in cannot be opted into
    plain = NOTICE.model_copy(update={"marketing": None})
    assert consent_updates(plain, "2026-01", True)["marketing_consent"] == "false"
    with pytest.raises(FieldInvalid, match="version 2026-01"):
        consent_updates(NOTICE, "2025-12", True)
    with pytest.raises(FieldInvalid, match="asks no consent"):
        consent_updates(None, "2026-01", True)


def test_reminders_need_the_opt_in_only_where_consent_is_asked() -> None:
    assert marketing_allowed(None, {})
    assert marketing_allowed(NOTICE, {"marketing_consent": "true"})
    assert not marketing_allowed(NOTICE, {"marketing_consent": "false"})
    assert not marketing_allowed(NOTICE, {})


def test_the_consent_frame() -> None:
    frame = parse_client_frame('{"type":"consent","id":"k1","version":"2026-01","marketing":true}')
    assert frame == ConsentGiven("k1", "2026-01", True)
    assert parse_client_frame('{"type":"consent","id":"k1","version":"v"}') == ConsentGiven(
        "k1", "v", False
    )
    for bad in (
        '{"type":"consent","id":"k1"}',
        '{"type":"consent","id":"k1","version":"v","marketing":"yes"}',
        '{"type":"consent","id":"k1","version":' + '"' + "v" * 65 + '"}',
        '{"type":"consent","version":"v"}',
    ):
        with pytest.raises(FrameError):
            parse_client_frame(bad)


def test_a_bad_consent_block_stops_the_start_naming_the_key(tmp_path: Path, redis_url: str) -> None:
    for block, key in (
        ('version = "1"', "text"),
        ('text = "ok"', "version"),
        ('text = "  "\nversion = "1"', "text"),
        ('text = "ok"\nversion = "1"\nwording = "x"', "wording"),
    ):
        path = tmp_path / "bad.toml"
        path.write_text(f"[sites.acme.consent]\n{block}\n")
        with pytest.raises(ConfigError, match=rf"sites\.acme\.consent\.{key}"):
            load_sites(settings_for(redis_url, config=path))


async def test_the_store_writes_redis_time_as_the_widget_reads_it(rds: aioredis.Redis) -> None:
    prelude = (ROOT / "server" / "lua" / "_prelude.lua").read_text()
    script = prelude + "\nreturn {iso_ms(tonumber(ARGV[1])), iso_ms(now_ms())}"
    for ms in (0, 951782400000, 1709164800123, 1798761599999, 4107542400001):
        stamp, now = await rds.eval(script, 0, ms)
        assert stamp == iso_ms(ms)  # leap days, year ends, 2100
    taken = datetime.fromisoformat(now.replace("Z", "+00:00"))
    assert abs(taken.timestamp() - time.time()) < 5


# --- the real app ----------------------------------------------------------------------


def _config(tmp_path: Path, receiver: Receiver, consent: str, recovery: str = "") -> Path:
    path = tmp_path / "chatlead.toml"
    path.write_text(
        f"""
[sites.acme]
company = "Acme Plumbing"
idle_timeout = "1s"

[[sites.acme.destinations]]
name = "crm"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true

{consent}
{recovery}
"""
    )
    return path


CONSENT = """
[sites.acme.consent]
text = "We keep this chat for 30 days to answer you. <Privacy>"
version = "2026-01"
marketing = "Email me a link to finish later"
"""


async def _app(app_factory: Any, tmp_path: Path, receiver: Receiver, **extra: Any) -> RunningApp:
    return await app_factory(  # type: ignore[no-any-return]
        config=_config(
            tmp_path, receiver, extra.pop("consent", CONSENT), extra.pop("recovery", "")
        ),
        public_url="https://chat.example",
        webhook_allow_private=True,
        **extra,
    )


async def _agree(
    v: Visitor, frame_id: str, version: str = "2026-01", marketing: bool = True
) -> dict[str, Any]:
    await v.send({"type": "consent", "id": frame_id, "version": version, "marketing": marketing})
    while True:
        frame = await v.recv()
        if frame["type"] in ("ack", "error") and frame.get("id") == frame_id:
            return frame


async def test_nothing_is_stored_before_consent_and_the_lead_carries_it(
    app_factory: Any, tmp_path: Path, receiver: Receiver, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, tmp_path, receiver)
    async with Visitor.connect(app.ws_url, site="acme") as v:
        assert v.welcome["consent"] == {
            "text": "We keep this chat for 30 days to answer you. <Privacy>",
            "version": "2026-01",
            "required": True,
            "marketing": "Email me a link to finish later",
        }
        sid = v.welcome["session_id"]
        seq = v.welcome["seq"]
        refused = await v.field("name", "Ada")
        assert refused["code"] == "consent_required"
        refused = await v.message("hello?")
        assert refused["code"] == "consent_required"
        await v.send({"type": "submit", "id": "s0"})
        assert (await v.expect("error"))["code"] == "consent_required"
        shard = keys.shard_of(sid, 16)
        assert await rds.llen(keys.transcript(shard, sid)) == seq
        assert await rds.hgetall(keys.fields(shard, sid)) == {}
        stale = await _agree(v, "k0", version="2025-06")
        assert stale["code"] == "invalid_field" and "2026-01" in stale["message"]
        ack = await _agree(v, "k1")
        assert ack["type"] == "ack" and ack["seq"] == seq  # no transcript entry
        assert (await _agree(v, "k1"))["type"] == "ack"  # a resend is acked again
        for name, value in (("name", "Ada"), ("email", "ada@example.com"), ("phone", "")):
            assert (await v.field(name, value))["type"] == "ack"
        assert (await v.field("message", "Leak under the sink"))["type"] == "ack"
    await wait_for(lambda: any(e["type"] == "lead.completed" for e in receiver.events), 10)
    lead = next(e for e in receiver.events if e["type"] == "lead.completed")["data"]
    fields = {f["name"]: f["value"] for f in lead["fields"]}
    assert fields["consent"] == "2026-01" and fields["marketing_consent"] == "true"
    agreed = datetime.fromisoformat(fields["consent_at"].replace("Z", "+00:00"))
    assert agreed.tzinfo is UTC and abs(agreed.timestamp() - time.time()) < 30


async def test_a_resumed_session_is_not_asked_again(
    app_factory: Any, tmp_path: Path, receiver: Receiver
) -> None:
    app = await _app(app_factory, tmp_path, receiver)
    async with Visitor.connect(app.ws_url, site="acme") as v:
        assert (await _agree(v, "k1", marketing=False))["type"] == "ack"
    again = {"session_id": v.welcome["session_id"], "resume_token": v.welcome["resume_token"]}
    async with Visitor.connect(app.ws_url, site="acme", **again) as same:
        assert same.welcome["resumed"] and "consent" not in same.welcome
        assert {"name": "consent", "value": "2026-01"} in same.welcome["fields"]
        assert (await same.field("name", "Ada"))["type"] == "ack"


async def test_an_optional_notice_is_shown_but_asks_nothing(
    app_factory: Any, tmp_path: Path, receiver: Receiver
) -> None:
    optional = CONSENT.replace('version = "2026-01"', 'version = "2026-01"\nrequired = false')
    app = await _app(app_factory, tmp_path, receiver, consent=optional)
    async with Visitor.connect(app.ws_url, site="acme") as v:
        assert v.welcome["consent"]["required"] is False
        assert (await v.field("name", "Ada"))["type"] == "ack"


async def test_a_site_without_consent_is_unchanged(
    app_factory: Any, tmp_path: Path, receiver: Receiver
) -> None:
    app = await _app(app_factory, tmp_path, receiver, consent="")
    async with Visitor.connect(app.ws_url, site="acme") as v:
        assert "consent" not in v.welcome
        assert (await v.field("name", "Ada"))["type"] == "ack"
        refused = await _agree(v, "k1")
        assert refused["code"] == "invalid_field" and "asks no consent" in refused["message"]
        assert (await v.field("consent", "2026-01"))["code"] == "invalid_field"  # derived


@pytest.fixture
def smtpd() -> Any:
    server = Smtpd(auth_require_tls=False)
    server.controller.start()
    yield server
    server.controller.stop()


async def test_reminders_go_only_to_visitors_who_opted_in(
    app_factory: Any, tmp_path: Path, receiver: Receiver, smtpd: Smtpd, rds: aioredis.Redis
) -> None:
    recovery = '[sites.acme.recovery]\nreminders = ["1s"]\nfrom = "Acme <hello@acme.example>"'
    app = await _app(app_factory, tmp_path, receiver, recovery=recovery, smtp_url=smtpd.url())
    sids = {}
    for email, opted_in in (("yes@example.com", True), ("no@example.com", False)):
        async with Visitor.connect(app.ws_url, site="acme") as v:
            assert (await _agree(v, "k1", marketing=opted_in))["type"] == "ack"
            await v.field("name", "Ada")
            await v.field("email", email)
            assert (await v.expect("lead", timeout=5))["status"] == "abandoned"
        sids[email] = v.welcome["session_id"]
    await wait_for(lambda: len(smtpd.handler.seen) >= 1, 15, interval=0.01)
    shard = keys.shard_of(sids["no@example.com"], 16)
    left = await rds.hget(keys.session(shard, sids["no@example.com"]), "abandoned_at")
    assert left  # flagged, and its reminder would have been due 1s later
    while time.time() * 1000 < int(left) + 2500:
        await asyncio.sleep(0.1)
    assert [m["To"] for m in smtpd.handler.messages] == ["yes@example.com"]
    pending = rds.zscan_iter(keys.deliveries(shard), match=f"*{sids['no@example.com']}_reminder*")
    assert [e async for e in pending] == []


async def test_a_consent_from_a_tab_that_fell_behind_is_decided_again(
    app_factory: Any, tmp_path: Path, receiver: Receiver
) -> None:
    optional = CONSENT.replace('version = "2026-01"', 'version = "2026-01"\nrequired = false')
    app = await _app(app_factory, tmp_path, receiver, consent=optional)
    async with Visitor.connect(app.ws_url, site="acme") as first:
        again = {
            "session_id": first.welcome["session_id"],
            "resume_token": first.welcome["resume_token"],
        }
        async with Visitor.connect(app.ws_url, site="acme", **again) as second:
            assert (await first.field("name", "Ada"))["type"] == "ack"  # the other tab moves on
            ack = await _agree(second, "k1")  # built on the older view: stale, then stored
            assert ack["type"] == "ack"
