"""Abuse from one client network: session floods, IPv6 address hopping, huge transcripts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from chatlead import keys
from chatlead.limits import client_network
from chatlead.protocol import CloseCode
from chatlead.store import MAX_TRANSCRIPT_BYTES
from chatlead.units import Rate, parse_rate

from tests.conftest import FULL_CONVERSATION, Visitor

SHARDS = 16


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_a_client_network_is_an_ipv4_address_or_an_ipv6_64(ip: str, network: str) -> None:
    assert client_network(ip) == network


@pytest.mark.parametrize(
    ("text", "rate"),
    [("300/min", Rate(300, 60)), ("5/s", Rate(5, 1)), ("1000/h", Rate(1000, 3600)),
     ("50/10m", Rate(50, 600))],
)  # fmt: skip
def test_rates_parse_and_read_back(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate
    assert parse_rate(str(rate)) == rate


@pytest.mark.parametrize("text", ["300", "0/min", "x/min", "5/", "5/0s", "-1/s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


async def _hello(url: str, **headers: str) -> tuple[list[dict[str, Any]], int | None]:
    """Frames until the welcome (then it closes) or until the server closes the socket."""
    frames: list[dict[str, Any]] = []
    try:
        async with websockets.connect(f"{url}?site=default", additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "hello", "site": "default"}))
            while True:
                frames.append(json.loads(await ws.recv()))
                if frames[-1]["type"] == "welcome":
                    return frames, None
    except websockets.ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


async def test_one_network_cannot_flood_new_sessions(app_factory: Any) -> None:
    app = await app_factory(new_sessions_per_ip="5/min")
    welcomes = [await _hello(app.ws_url) for _ in range(5)]
    assert all(frames[-1]["type"] == "welcome" for frames, _ in welcomes)
    frames, code = await _hello(app.ws_url)
    assert code == CloseCode.TOO_MANY
    assert frames[-1]["code"] == "rate_limited"
    # a visitor coming back to their session is not a new session
    first = welcomes[0][0][-1]
    hello = {"session_id": first["session_id"], "resume_token": first["resume_token"]}
    async with Visitor.connect(app.ws_url, **hello) as v:
        assert v.welcome["resumed"] is True
    # another network is not limited by this one (the app trusts X-Forwarded-For from
    # loopback, as behind a same-host proxy)
    frames, code = await _hello(app.ws_url, **{"X-Forwarded-For": "198.51.100.9"})
    assert frames[-1]["type"] == "welcome"


async def test_an_ipv6_64_is_one_client_for_the_socket_cap(app_factory: Any) -> None:
    app = await app_factory(max_conn_per_ip=2)
    same_64 = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
    async with (
        websockets.connect(
            f"{app.ws_url}?site=default", additional_headers={"X-Forwarded-For": same_64[0]}
        ),
        websockets.connect(
            f"{app.ws_url}?site=default", additional_headers={"X-Forwarded-For": same_64[1]}
        ),
    ):
        frames, code = await _hello(app.ws_url, **{"X-Forwarded-For": same_64[2]})
        assert code == CloseCode.TOO_MANY
        frames, code = await _hello(app.ws_url, **{"X-Forwarded-For": "2001:db8:1:3::1"})
        assert frames[-1]["type"] == "welcome"


async def _ttl_s(rds: aioredis.Redis, session_id: str) -> float:
    return await rds.pttl(keys.session(keys.shard_of(session_id, SHARDS), session_id)) / 1000


async def test_a_session_the_visitor_never_used_expires_within_an_hour(
    app_factory: Any, rds: aioredis.Redis
) -> None:
    app = await app_factory(retention="30d")
    async with Visitor.connect(app.ws_url) as silent:
        assert await _ttl_s(rds, silent.welcome["session_id"]) <= 3600
    async with Visitor.connect(app.ws_url) as talking:
        await talking.field("name", "Ada")
        assert await _ttl_s(rds, talking.welcome["session_id"]) > 29 * 86400


async def test_a_huge_transcript_loses_its_oldest_visitor_text_never_its_fields(
    app_factory: Any, rds: aioredis.Redis
) -> None:
    app = await app_factory(msg_rate=1000, msg_burst=1000)
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada Lovelace")
        texts = [f"{i:04d}" + "x" * 3_900 for i in range(90)]  # ~350 KB
        for text in texts:
            reply = await v.message(text)
            assert reply["type"] == "ack", reply
        session_id = v.welcome["session_id"]
    shard = keys.shard_of(session_id, SHARDS)
    entries = [json.loads(e) for e in await rds.lrange(keys.transcript(shard, session_id), 0, -1)]
    size = sum(len(json.dumps(e)) for e in entries)
    assert size <= MAX_TRANSCRIPT_BYTES + 8_000
    visitor = [e["text"] for e in entries if e["from"] == "visitor"]
    assert visitor[-1] == texts[-1]  # the newest text is whole
    assert any("removed" in text for text in visitor[:10])  # the oldest gave way
    assert await rds.hget(keys.fields(shard, session_id), "name") == "Ada Lovelace"


async def _closed_code(v: Visitor, within_s: float) -> int | None:
    """Ping (as the widget does) and read until the server closes; its close code."""

    async def ping() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await v.send({"type": "ping"})
                await asyncio.sleep(0.2)

    pinging = asyncio.create_task(ping())
    try:
        async with asyncio.timeout(within_s):
            while True:
                await v.recv(timeout=within_s)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    finally:
        pinging.cancel()


async def test_a_finished_chat_that_only_pings_is_let_go_after_the_idle_timeout(
    app_factory: Any,
) -> None:
    app = await app_factory(idle_timeout="1s")
    async with Visitor.connect(app.ws_url) as done:
        for name, value in FULL_CONVERSATION:
            await done.field(name, value)
        await done.expect("lead")
        assert await _closed_code(done, 4) == CloseCode.IDLE
    async with Visitor.connect(app.ws_url) as gone:  # abandoned, then idle
        await gone.field("name", "Ada")
        assert await _closed_code(gone, 6) == CloseCode.IDLE
        assert any(f["type"] == "lead" and f["status"] == "abandoned" for f in gone.frames)


async def test_an_open_chat_is_never_let_go_while_the_visitor_writes(app_factory: Any) -> None:
    app = await app_factory(idle_timeout="1s")
    async with Visitor.connect(app.ws_url) as v:
        for i in range(6):  # abandoned and recovered over and over, never idle for long
            await asyncio.sleep(0.5)
            assert (await v.message(f"still here {i}"))["type"] == "ack"
