"""Resume links on the real app (CONTRACT §11): in the abandoned event, where ``/r/``
leads, ``hello.resume`` on another device, and every dead link."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.resume_links import KeyRing, make_token, new_key

from tests.conftest import SECRET, Receiver, RunningApp, Visitor, admin_headers, wait_for

SHOP = "https://shop.example"
PAGE = f"{SHOP}/quote?utm_source=mail#pricing"


async def _app(app_factory: Any, receiver: Receiver, **overrides: Any) -> RunningApp:
    settings = {
        "idle_timeout": "1s",
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_allow_private": True,
        "public_url": "https://chat.example",
        **overrides,
    }
    return await app_factory(**settings)  # type: ignore[no-any-return]


async def _abandon(
    app: RunningApp, receiver: Receiver, origin: str | None = None, page: str | None = PAGE
) -> tuple[str, str]:
    """A chat left after two answers: its session id and its resume link's token."""
    hello = {"page": {"url": page}} if page else {}
    async with Visitor.connect(app.ws_url, origin=origin, **hello) as v:
        await v.field("name", "Ada")
        await v.field("email", "ada@example.com")
        await v.expect("lead", timeout=5)
    sid = v.welcome["session_id"]
    await wait_for(lambda: any(e["data"]["sessionId"] == sid for e in receiver.events), 5)
    event = next(e for e in receiver.events if e["data"]["sessionId"] == sid)
    assert event["type"] == "lead.abandoned"
    prefix = "https://chat.example/r/"
    assert event["resume_url"].startswith(prefix)
    return sid, event["resume_url"][len(prefix) :]


async def _completed(v: Visitor) -> None:
    """The visitor was told the lead is complete (the frame may precede the ack)."""
    if not any(f["type"] == "lead" and f["status"] == "completed" for f in v.frames):
        assert (await v.expect("lead"))["status"] == "completed"


async def test_the_abandoned_event_carries_a_link_that_leads_back_to_the_page(
    app_factory: Any, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    app = await _app(app_factory, receiver, allowed_origins=SHOP)
    sid, token = await _abandon(app, receiver, origin=SHOP)
    answer = await http.get(f"{app.base}/r/{token}")
    assert answer.status_code == 302
    assert answer.headers["location"] == f"{SHOP}/quote?utm_source=mail#chatlead-resume={token}"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    # the same event on a retry carries the same link
    assert [e["resume_url"] for e in receiver.events] == [f"https://chat.example/r/{token}"]


async def test_a_page_of_a_wildcard_site_gets_our_chat_page_instead(
    app_factory: Any, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    app = await _app(app_factory, receiver)  # allowed_origins unset: "*" on loopback
    _, token = await _abandon(app, receiver, origin=SHOP)
    answer = await http.get(f"{app.base}/r/{token}")
    assert answer.status_code == 302
    assert answer.headers["location"] == f"{token}/chat#chatlead-resume={token}"
    chat = await http.get(f"{app.base}/r/{token}/chat")
    assert chat.status_code == 200 and 'data-site="default"' in chat.text
    assert "/widget/chatlead." in chat.text and chat.headers["cache-control"] == "no-store"


async def test_an_unknown_page_or_another_origin_gets_our_chat_page(
    app_factory: Any, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    app = await _app(app_factory, receiver, allowed_origins=SHOP)
    for page in (None, "https://evil.example/"):
        _, token = await _abandon(app, receiver, origin=SHOP, page=page)
        answer = await http.get(f"{app.base}/r/{token}")
        assert answer.status_code == 302
        assert answer.headers["location"].startswith(f"{token}/chat#")


async def test_dead_links_are_410_with_no_data(
    app_factory: Any,
    receiver: Receiver,
    http: httpx.AsyncClient,
    rds: aioredis.Redis,
    redis_url: str,
) -> None:
    app = await _app(app_factory, receiver)
    sid, token = await _abandon(app, receiver)
    ring = KeyRing.loads(await rds.get(keys.RESUME_KEYS))
    forged = make_token(KeyRing(new_key()), sid, int(time.time()) + 600)
    expired = make_token(ring, sid, int(time.time()) - 1)
    for dead in (forged, token[:-1], token[:-1] + ("A" if token[-1] != "A" else "B"), expired):
        for path in (f"/r/{dead}", f"/r/{dead}/chat"):
            answer = await http.get(app.base + path)
            assert answer.status_code == 410, path
            assert "Ada" not in answer.text and "ada@example.com" not in answer.text
    # an expired link still names its site
    assert "default" in (await http.get(f"{app.base}/r/{expired}")).text
    assert (await http.get(f"{app.base}/r/{token}")).status_code == 302
    erased = await http.delete(f"{app.base}/api/sessions/{sid}", headers=admin_headers(redis_url))
    assert erased.status_code in (200, 204)
    assert (await http.get(f"{app.base}/r/{token}")).status_code == 410
    # nor does the socket resume it
    async with Visitor.connect(app.ws_url, resume=token) as v:
        assert v.welcome["session_id"] != sid and v.welcome["transcript"][-1]["from"] == "bot"
        assert any(f.get("code") == "bad_resume" for f in v.frames)


async def test_a_link_resumes_the_chat_on_another_device_and_marks_it_recovered(
    app_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, receiver)
    sid, token = await _abandon(app, receiver)
    # a fresh widget: no session id, no resume token, only the link's token
    async with Visitor.connect(app.ws_url, resume=token) as v:
        welcome = v.welcome
        assert welcome["session_id"] == sid and welcome["resumed"] is True
        assert welcome["status"] == "abandoned"
        texts = [e["text"] for e in welcome["transcript"]]
        assert "Ada" in texts and "ada@example.com" in texts
        assert welcome["prompt"]["field"] == "phone"  # the pending question
        own = welcome["resume_token"]
        v._n = 100  # frame ids of its own (a widget's are random)
        await v.field("phone", "")
        await v.field("message", "back again")
        await _completed(v)
    # the widget keeps the link as its token: a reload resumes with it
    async with Visitor.connect(app.ws_url, session_id=sid, resume_token=own) as again:
        assert again.welcome["session_id"] == sid and again.welcome["status"] == "completed"
    await wait_for(lambda: len(receiver.events) == 2, 5)
    completed = receiver.events[1]
    assert completed["type"] == "lead.completed" and "resume_url" not in completed
    fields = {f["name"]: f["value"] for f in completed["data"]["fields"]}
    assert fields["recovered_by"] == "link"
    shard = keys.shard_of(sid, 16)
    assert await rds.hget(keys.session(shard, sid), "recovered_by") == "link"
    assert await rds.hget(keys.session(shard, sid), "link_opened")


async def test_a_return_without_the_link_is_marked_returned(
    app_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    app = await _app(app_factory, receiver)
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        await v.expect("lead", timeout=5)
        await v.field("email", "ada@example.com")
    sid = v.welcome["session_id"]
    shard = keys.shard_of(sid, 16)
    assert await rds.hget(keys.session(shard, sid), "recovered_by") == "returned"


async def test_a_completed_chat_opens_read_only(app_factory: Any, receiver: Receiver) -> None:
    app = await _app(app_factory, receiver)
    sid, token = await _abandon(app, receiver)
    async with Visitor.connect(app.ws_url, resume=token) as v:
        v._n = 100
        await v.field("phone", "")
        await v.field("message", "done")
        await _completed(v)
    async with Visitor.connect(app.ws_url, resume=token) as v:
        assert v.welcome["session_id"] == sid and v.welcome["status"] == "completed"
        v._n = 200
        answer = await v.message("one more thing")
        assert answer["type"] == "error" and answer["code"] == "session_closed"


async def test_rotating_the_keys_keeps_live_links_until_the_next_rotation(
    app_factory: Any, receiver: Receiver, http: httpx.AsyncClient, redis_url: str
) -> None:
    from chatlead.redis_client import connect_redis
    from chatlead.resume_keys import ResumeLinks

    app = await _app(app_factory, receiver)
    _, token = await _abandon(app, receiver)
    client = connect_redis(redis_url)
    links = ResumeLinks(client, 3600, "https://chat.example", 16, 86_400_000)  # type: ignore[arg-type]
    try:
        await links.rotate()
        assert (await http.get(f"{app.base}/r/{token}")).status_code == 302
        await links.rotate()
        assert (await http.get(f"{app.base}/r/{token}")).status_code == 410
    finally:
        await client.aclose()


async def test_a_link_of_another_site_resumes_nothing(
    app_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    config = tmp_path / "sites.toml"
    config.write_text(
        "".join(
            f'[sites.{site}]\nallowed_origins = ["*"]\nidle_timeout = "1s"\n'
            f'[sites.{site}.webhook]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
            for site in ("one", "two")
        ),
        encoding="utf-8",
    )
    app = await _app(app_factory, receiver, config=str(config))
    async with Visitor.connect(app.ws_url, site="one") as v:
        await v.field("name", "Ada")
        await v.field("email", "ada@example.com")
        await v.expect("lead", timeout=5)
    await wait_for(lambda: receiver.events, 5)
    token = receiver.events[0]["resume_url"].rsplit("/", 1)[1]
    async with Visitor.connect(app.ws_url, site="two", resume=token) as other:
        assert other.welcome["session_id"] != v.welcome["session_id"]
        assert other.welcome["transcript"][-1]["from"] == "bot"
    async with Visitor.connect(app.ws_url, site="one", resume=token) as same:
        assert same.welcome["session_id"] == v.welcome["session_id"]


async def test_the_admin_and_the_abandoned_report_show_the_link(
    app_factory: Any, receiver: Receiver, http: httpx.AsyncClient, redis_url: str
) -> None:
    app = await _app(app_factory, receiver)
    sid, token = await _abandon(app, receiver)
    link = f"https://chat.example/r/{token}"
    auth = admin_headers(redis_url)
    detail = (await http.get(f"{app.base}/api/sessions/{sid}", headers=auth)).json()
    assert detail["resume_url"] == link
    report = (await http.get(f"{app.base}/api/reports/abandoned", headers=auth)).json()
    assert [item["resume_url"] for item in report["items"]] == [link]
    csv = (await http.get(f"{app.base}/api/reports/abandoned?format=csv", headers=auth)).text
    header, row = csv.lstrip("\ufeff").splitlines()[:2]
    assert header.split(",")[-1] == "resume_url" and row.split(",")[-1] == link
    page = await http.get(f"{app.base}/admin/sessions/{sid}", headers=auth)
    assert page.status_code == 200 and f'href="{link}"' in page.text
    # a completed session has no use for it
    async with Visitor.connect(app.ws_url, resume=token) as v:
        v._n = 100
        await v.field("phone", "")
        await v.field("message", "done")
        await _completed(v)
    detail = (await http.get(f"{app.base}/api/sessions/{sid}", headers=auth)).json()
    assert detail["resume_url"] is None


async def test_the_command_line_rotates_the_keys(rds: aioredis.Redis, redis_url: str) -> None:
    import asyncio
    import os
    import sys

    from tests.conftest import ROOT

    await rds.set(keys.RESUME_KEYS, KeyRing(new_key()).dumps())
    before = KeyRing.loads(await rds.get(keys.RESUME_KEYS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATLEAD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatlead",
        "resume-keys",
        "rotate",
        env={**env, "CHATLEAD_REDIS_URL": redis_url},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    after = KeyRing.loads(await rds.get(keys.RESUME_KEYS))
    assert after.previous == before.current and after.current != before.current
    assert f"{after.current.id:08x}" in out.decode()
    assert base64_secret(after) not in out.decode() + err.decode()


def base64_secret(ring: KeyRing) -> str:
    return str(ring.current.to_json()["secret"])
