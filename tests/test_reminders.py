"""Reminder emails and one-click unsubscribe on the real app (CONTRACT §11, Reminders):
a real Redis, the app's own sweeper and delivery loops, a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.errors import ConfigError
from chatlead.formats.reminder import message_id
from chatlead.site_config import check_outgoing, load_sites
from chatlead.unsubscribe import address_hash, make_token, verify_token

from tests.conftest import RunningApp, Visitor, admin_headers, settings_for, wait_for
from tests.test_formats_email import Smtpd

SENDER = "Acme Plumbing <hello@acme.example>"
PUBLIC = "https://chat.example"


def _config(tmp_path: Path, reminders: str = '["1s", "2s"]') -> Path:
    path = tmp_path / "chatlead.toml"
    path.write_text(
        f"""
[sites.acme]
company = "Acme Plumbing"
idle_timeout = "1s"

[sites.acme.recovery]
reminders = {reminders}
from = "{SENDER}"
subject = "Finish your quote request"
"""
    )
    return path


@pytest.fixture
def smtpd() -> Any:
    server = Smtpd(auth_require_tls=False)
    server.controller.start()
    yield server
    server.controller.stop()


async def _app(app_factory: Any, tmp_path: Path, smtp_url: str, **extra: Any) -> RunningApp:
    return await app_factory(  # type: ignore[no-any-return]
        config=_config(tmp_path, **extra.pop("config", {})),
        smtp_url=smtp_url,
        public_url=PUBLIC,
        webhook_allow_private=True,
        **extra,
    )


async def _leave(app: RunningApp, email: str | None = "ada@example.com") -> str:
    """A chat left after giving a name (and an email): its session id."""
    async with Visitor.connect(app.ws_url, site="acme") as v:
        await v.field("name", "Ada")
        if email:
            await v.field("email", email)
        assert (await v.expect("lead", timeout=5))["status"] == "abandoned"
    return str(v.welcome["session_id"])


def _step_id(sid: str, step: int, number: int = 1) -> str:
    return keys.reminder_event(sid, number, step)


async def _event(rds: aioredis.Redis, eid: str) -> dict[str, str]:
    return await rds.hgetall(keys.event(keys.shard_of(keys.event_session(eid), 16), eid))  # type: ignore[no-any-return]


async def _settled(rds: aioredis.Redis, eid: str, timeout: float = 10) -> dict[str, str]:
    async def done() -> dict[str, str] | None:
        event = await _event(rds, eid)
        return event if event.get("status") in ("delivered", "dead") else None

    return await wait_for(done, timeout)  # type: ignore[no-any-return]


async def _attempts(rds: aioredis.Redis, eid: str) -> list[str]:
    shard = keys.shard_of(keys.event_session(eid), 16)
    return await rds.lrange(keys.event_attempts(shard, eid), 0, -1)  # type: ignore[no-any-return]


async def test_two_reminders_at_their_times_with_stable_ids_and_unsubscribe_headers(
    app_factory: Any, tmp_path: Path, smtpd: Smtpd, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, tmp_path, smtpd.url())
    sid = await _leave(app)
    await wait_for(lambda: len(smtpd.handler.seen) >= 1, 15, interval=0.01)
    first_at = time.time()
    await wait_for(lambda: len(smtpd.handler.seen) >= 2, 15, interval=0.01)
    second_at = time.time()
    first, second = smtpd.handler.messages
    shard = keys.shard_of(sid, 16)
    abandoned = int(await rds.hget(keys.session(shard, sid), "abandoned_at")) / 1000
    assert 0.9 <= first_at - abandoned <= 2.5  # 1s after the abandonment (Redis clock)
    assert 1.9 <= second_at - abandoned <= 3.5  # 2s after it
    assert [m["Message-ID"] for m in (first, second)] == [
        message_id(_step_id(sid, 1), SENDER),
        message_id(_step_id(sid, 2), SENDER),
    ]
    assert first["Message-ID"] != second["Message-ID"]
    for message in (first, second):
        assert message["Subject"] == "Finish your quote request"
        assert message["From"] == SENDER and message["To"] == "ada@example.com"
        assert message["List-Unsubscribe"].startswith(f"<{PUBLIC}/u/acme.")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text = message.get_body(("plain",)).get_content()
        page = message.get_body(("html",)).get_content()
        assert f"{PUBLIC}/r/" in text and f'href="{PUBLIC}/r/' in page
        # the question the visitor left at
        assert "And a phone number? (optional)" in text
        assert "And a phone number? (optional)" in page
    assert [item["to"] for item in smtpd.handler.seen] == [["ada@example.com"]] * 2
    for step in (1, 2):
        assert (await _settled(rds, _step_id(sid, step)))["status"] == "delivered"


async def test_no_email_no_reminder(
    app_factory: Any, tmp_path: Path, smtpd: Smtpd, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, tmp_path, smtpd.url())
    sid = await _leave(app, email=None)
    await wait_for(lambda: rds.hget(keys.session(keys.shard_of(sid, 16), sid), "abandoned_at"), 5)
    shard = keys.shard_of(sid, 16)
    assert [
        e async for e in rds.zscan_iter(keys.deliveries(shard), match=f"*{sid}_reminder*")
    ] == []
    assert smtpd.handler.seen == []


def _resume_token(message: Any) -> str:
    text = message.get_body(("plain",)).get_content()
    return str(re.search(r"/r/([A-Za-z0-9._~-]+)", text).group(1))  # type: ignore[union-attr]


async def test_a_visitor_who_comes_back_gets_no_later_step(
    app_factory: Any,
    tmp_path: Path,
    smtpd: Smtpd,
    rds: aioredis.Redis,
    http: httpx.AsyncClient,
    redis_url: str,
) -> None:
    app = await _app(app_factory, tmp_path, smtpd.url(), config={"reminders": '["1s", "4s"]'})
    sid = await _leave(app)
    await wait_for(lambda: len(smtpd.handler.seen) == 1, 10)
    # the reminder's link brings the visitor back, who finishes the chat
    token = _resume_token(smtpd.handler.messages[0])
    text = smtpd.handler.messages[0].get_body(("plain",)).get_content()
    assert f"{PUBLIC}/r/{token}?s=1" in text  # the link of step 1
    assert (await http.get(f"{app.base}/r/{token}?s=1")).status_code == 302
    async with Visitor.connect(app.ws_url, site="acme", resume=token) as v:
        assert v.welcome["session_id"] == sid
        v._n = 100
        await v.field("phone", "")
        await v.field("message", "Boiler leaking")
        if not any(f["type"] == "lead" and f["status"] == "completed" for f in v.frames):
            assert (await v.expect("lead"))["status"] == "completed"
    skipped = await _settled(rds, _step_id(sid, 2), 10)
    assert skipped["status"] == "delivered"
    assert "not sent: the session completed" in (await _attempts(rds, _step_id(sid, 2)))[-1]
    assert [m["Message-ID"] for m in smtpd.handler.messages] == [
        message_id(_step_id(sid, 1), SENDER)
    ]
    shard = keys.shard_of(sid, 16)
    assert await rds.hget(keys.session(shard, sid), "recovered_by") == "reminder:1"
    # the recovery report: one step sent (the other settled unsent), credited to step 1
    report = await http.get(
        f"{app.base}/api/reports/recovery?site=acme", headers=admin_headers(redis_url)
    )
    totals = report.json()["totals"]
    assert totals["reminded"] == {"1": 1, "2": 0, "3": 0}
    assert totals["recovered_by"] == {"reminder:1": 1} and totals["link_opened"] == 1
    assert totals["completed_after_recovery"] == 1 and totals["contactable"] == 1
    [back] = report.json()["sessions"]
    assert back["session_id"] == sid and back["status"] == "completed"


async def test_reopened_then_left_again_skips_the_old_steps(
    app_factory: Any, tmp_path: Path, smtpd: Smtpd, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, tmp_path, smtpd.url(), config={"reminders": '["1s", "4s"]'})
    sid = await _leave(app)
    await wait_for(lambda: len(smtpd.handler.seen) == 1, 10)
    async with Visitor.connect(
        app.ws_url, site="acme", resume=_resume_token(smtpd.handler.messages[0])
    ) as v:
        v._n = 100
        await v.field("phone", "")  # back (open again), then idle: a second abandonment
        assert (await v.expect("lead", timeout=5))["status"] == "abandoned"
    await _settled(rds, _step_id(sid, 2), 10)
    assert "not sent: the visitor came back" in (await _attempts(rds, _step_id(sid, 2)))[-1]
    await wait_for(lambda: len(smtpd.handler.seen) >= 2, 10)
    ids = [m["Message-ID"] for m in smtpd.handler.messages]
    assert message_id(_step_id(sid, 2), SENDER) not in ids
    assert message_id(_step_id(sid, 1, number=2), SENDER) in ids


async def test_one_click_unsubscribe_stops_the_next_step(
    app_factory: Any, tmp_path: Path, smtpd: Smtpd, rds: aioredis.Redis, http: httpx.AsyncClient
) -> None:
    app = await _app(app_factory, tmp_path, smtpd.url(), config={"reminders": '["1s", "3s"]'})
    sid = await _leave(app, email="Ada@Example.com")
    await wait_for(lambda: len(smtpd.handler.seen) == 1, 10)
    link = smtpd.handler.messages[0]["List-Unsubscribe"].strip("<>")
    path = link.removeprefix(PUBLIC)
    page = await http.get(app.base + path)  # the confirm page changes nothing
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert await rds.smembers(keys.suppressed("acme")) == set()
    answer = await http.post(
        app.base + path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and "unsubscribed" in answer.text
    assert await rds.smembers(keys.suppressed("acme")) == {address_hash("ada@example.com")}
    multipart = await http.post(app.base + path, files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200
    await _settled(rds, _step_id(sid, 2), 10)
    assert "suppressed" in (await _attempts(rds, _step_id(sid, 2)))[-1]
    assert len(smtpd.handler.seen) == 1


async def test_smtp_down_at_the_due_time_is_retried_once_per_step(
    app_factory: Any, tmp_path: Path, rds: aioredis.Redis
) -> None:
    down = Smtpd(auth_require_tls=False)  # its port, not listening yet
    app = await _app(app_factory, tmp_path, down.url(), retry_schedule="0,1s,1s,1s,1s,1s,1s,1s")
    sid = await _leave(app)

    async def retried() -> bool:
        return len(await _attempts(rds, _step_id(sid, 1))) >= 2

    await wait_for(retried, 15)  # due, refused, retried; the next step waits behind it
    assert (await _event(rds, _step_id(sid, 1)))["status"] == "pending"
    down.controller.start()
    try:
        for step in (1, 2):
            assert (await _settled(rds, _step_id(sid, step), 15))["status"] == "delivered"
        ids = [m["Message-ID"] for m in down.handler.messages]
        assert sorted(ids) == sorted(message_id(_step_id(sid, s), SENDER) for s in (1, 2))
    finally:
        down.controller.stop()


async def test_an_address_refused_by_smtp_is_a_dead_letter_and_gets_no_more(
    app_factory: Any, tmp_path: Path, smtpd: Smtpd, rds: aioredis.Redis
) -> None:
    smtpd.handler.rcpt_reply = "550 5.1.1 No such user"
    app = await _app(app_factory, tmp_path, smtpd.url())
    sid = await _leave(app)
    assert (await _settled(rds, _step_id(sid, 1), 10))["status"] == "dead"
    assert "SMTP 550" in (await _attempts(rds, _step_id(sid, 1)))[-1]
    second = await _settled(rds, _step_id(sid, 2), 10)
    assert second["status"] == "delivered"  # settled with nothing sent
    assert "suppressed" in (await _attempts(rds, _step_id(sid, 2)))[-1]
    assert smtpd.handler.seen == []
    assert await rds.scard(keys.suppressed("acme")) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_forged_token_is_an_error_page_and_suppresses_nothing(
    app_factory: Any,
    tmp_path: Path,
    smtpd: Smtpd,
    rds: aioredis.Redis,
    http: httpx.AsyncClient,
    method: str,
) -> None:
    app = await _app(app_factory, tmp_path, smtpd.url())
    digest = "A" * 43
    for token in (f"acme.{digest}.{'B' * 22}", "nonsense", "acme..", "x" * 300):
        answer = await http.request(method, f"{app.base}/u/{token}", content="x=1")
        assert answer.status_code == 400
        assert "acme" not in answer.text.lower() and "Acme" not in answer.text
    assert [k async for k in rds.scan_iter(match=keys.suppressed("*"))] == []


def test_reminders_are_validated_and_need_smtp(tmp_path: Path, redis_url: str) -> None:
    path = _config(tmp_path, '["1h", "1d", "2d", "3d"]')
    with pytest.raises(ConfigError, match=r"sites\.acme\.recovery\.reminders"):
        load_sites(settings_for(redis_url, config=path))
    path = _config(tmp_path, '["soon"]')
    with pytest.raises(ConfigError, match=r"sites\.acme\.recovery\.reminders.*duration"):
        load_sites(settings_for(redis_url, config=path))
    settings = settings_for(redis_url, config=_config(tmp_path, '["1h", "1d"]'))
    sites = load_sites(settings)
    assert sites["acme"].recovery is not None
    assert sites["acme"].recovery.reminders == (3600.0, 86400.0)
    with pytest.raises(ConfigError, match="CHATLEAD_SMTP_URL.*acme"):
        check_outgoing(settings, sites, worker=False)
    check_outgoing(
        settings_for(redis_url, config=settings.config, smtp_url="smtp://127.0.0.1:25"),
        sites,
        worker=False,
    )


async def test_erasing_the_session_takes_its_pending_steps_out(
    app_factory: Any,
    tmp_path: Path,
    smtpd: Smtpd,
    rds: aioredis.Redis,
    http: httpx.AsyncClient,
    redis_url: str,
) -> None:
    app = await _app(app_factory, tmp_path, smtpd.url(), config={"reminders": '["1s", "1h"]'})
    sid = await _leave(app, email="erin.erasmus@example.com")
    await wait_for(lambda: len(smtpd.handler.seen) == 1, 10)
    shard = keys.shard_of(sid, 16)
    assert await rds.zscore(keys.outbox_due(shard), _step_id(sid, 2)) is not None
    answer = await http.delete(f"{app.base}/api/sessions/{sid}", headers=admin_headers(redis_url))
    assert answer.status_code == 200, answer.text
    assert await rds.zscore(keys.outbox_due(shard), _step_id(sid, 2)) is None
    assert (await _event(rds, _step_id(sid, 2)))["status"] == "dead"
    assert not await rds.exists(keys.session_events(shard, sid, keys.REMINDER_SUFFIX))
    async for key in rds.scan_iter(count=1000):
        kind = await rds.type(key)
        value: Any = ""
        if kind == "hash":
            value = await rds.hgetall(key)
        elif kind == "list":
            value = await rds.lrange(key, 0, -1)
        elif kind == "string":
            value = await rds.get(key)
        assert "erin.erasmus" not in f"{key} {value}"


def test_unsubscribe_tokens_name_a_site_and_an_address_hash_only() -> None:
    key, other = b"k" * 32, b"o" * 32
    token = make_token(key, "acme", " Ada@Example.com ")
    assert "ada" not in token.lower()
    target = verify_token(key, token)
    assert target is not None and target.site == "acme"
    assert target.address_hash == address_hash("ada@example.com")
    assert verify_token(other, token) is None  # another key
    site, digest, mac = token.split(".")
    assert verify_token(key, f"beta.{digest}.{mac}") is None  # moved to another site
    flipped = digest[:-2] + ("A" if digest[-2] != "A" else "B") + digest[-1]
    assert verify_token(key, f"{site}.{flipped}.{mac}") is None
