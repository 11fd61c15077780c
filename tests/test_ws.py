"""The /ws endpoint against real Redis, a real server and a real receiver."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from chatlead import protocol
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import FULL_CONVERSATION, Receiver, RunningApp, Visitor, wait_for


async def _converse(visitor: Visitor) -> list[dict[str, Any]]:
    acks = []
    for name, value in FULL_CONVERSATION:
        acks.append(await visitor.field(name, value))
    return acks


async def test_full_conversation_delivers_one_signed_external_lead(
    app: RunningApp, receiver: Receiver
) -> None:
    async with Visitor.connect(app.ws_url, page={"url": "https://a.example/?utm_medium=cpc"}) as v:
        assert v.welcome["status"] == "open" and v.welcome["seq"] == 2
        assert v.welcome["prompt"] == {"field": "name", "kind": "name"}
        acks = await _converse(v)
        assert [a["type"] for a in acks] == ["ack"] * 4
        assert [a["seq"] for a in acks] == [3, 5, 7, 9]
        lead_frame = await v.expect("lead")
        assert lead_frame == {
            "type": "lead",
            "status": "completed",
            "session_id": v.welcome["session_id"],
        }
    await wait_for(lambda: receiver.events, 10)
    await asyncio.sleep(0.3)
    assert len(receiver.events) == 1 and receiver.rejected == 0
    event = receiver.events[0]
    assert event["type"] == "lead.completed"
    lead = event["data"]
    assert lead["sessionId"] == v.welcome["session_id"] and lead["isAbandoned"] is False
    assert lead["userId"] == v.welcome["user_id"]
    assert {f["name"]: f["value"] for f in lead["fields"]} == {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+12025550143",
        "message": "My boiler is leaking",
        "page_url": "https://a.example/?utm_medium=cpc",
        "utm_medium": "cpc",
    }
    seqs = [m["attributes"]["seq"] for m in lead["transcript"]]
    assert seqs == list(range(1, 11))
    visitor_lines = [m["message"] for m in lead["transcript"] if m["from"]["id"] != "bot"]
    assert visitor_lines == [
        "Ada Lovelace",
        "ada@example.com",
        "+12025550143",
        "My boiler is leaking",
    ]
    headers = receiver.requests[0]["headers"]
    assert headers["webhook-id"] == f"evt_{lead['sessionId']}_completed"
    assert headers["webhook-signature"].startswith("v1,")


async def test_duplicate_ids_are_acked_with_the_original_seq(app: RunningApp, rds: Any) -> None:
    async with Visitor.connect(app.ws_url) as v:
        first = await v.field("name", "Ada", frame_id="same")
        again = await v.field("name", "Someone else", frame_id="same")
        assert first == again == {"type": "ack", "id": "same", "seq": 3}
        msg = await v.message("hello", frame_id="m1")
        assert await v.message("hello", frame_id="m1") == msg
    async with Visitor.connect(
        app.ws_url,
        session_id=v.welcome["session_id"],
        resume_token=v.welcome["resume_token"],
    ) as back:
        texts = [m["text"] for m in back.welcome["transcript"]]
        assert texts.count("Ada") == 1 and texts.count("hello") == 1
        assert "Someone else" not in texts


async def test_resume_returns_messages_after_last_seq(app: RunningApp) -> None:
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        await v.field("email", "ada@example.com")
    async with Visitor.connect(
        app.ws_url,
        session_id=v.welcome["session_id"],
        resume_token=v.welcome["resume_token"],
        last_seq=3,
    ) as back:
        w = back.welcome
        assert w["resumed"] is True and w["status"] == "open" and w["seq"] == 6
        assert [m["seq"] for m in w["transcript"]] == [4, 5, 6]
        assert {f["name"] for f in w["fields"]} == {"name", "email"}
        assert w["prompt"]["field"] == "phone"
        # the conversation continues where it was
        assert (await back.field("phone", "", frame_id="skip"))["seq"] == 7


async def test_wrong_resume_token_gets_bad_resume_and_a_fresh_session(app: RunningApp) -> None:
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Secret Name")
    async with websockets.connect(app.ws_url + "?site=default") as ws:
        hello = {
            "type": "hello",
            "site": "default",
            "session_id": v.welcome["session_id"],
            "resume_token": "guess",
        }
        await ws.send(json.dumps(hello))
        error = json.loads(await ws.recv())
        welcome = json.loads(await ws.recv())
    assert error["type"] == "error" and error["code"] == "bad_resume"
    assert welcome["type"] == "welcome" and welcome["resumed"] is False
    assert welcome["session_id"] != v.welcome["session_id"]
    assert "Secret Name" not in json.dumps(welcome)


async def test_completed_session_is_read_only(app: RunningApp) -> None:
    async with Visitor.connect(app.ws_url) as v:
        acks = await _converse(v)
        late = await v.message("one more thing")
        assert late["type"] == "error" and late["code"] == "session_closed"
        again = await v.field("message", "resent", frame_id=acks[-1]["id"])
        assert again == acks[-1]
    async with Visitor.connect(
        app.ws_url, session_id=v.welcome["session_id"], resume_token=v.welcome["resume_token"]
    ) as back:
        assert back.welcome["status"] == "completed" and "prompt" not in back.welcome
        assert (await back.message("hi", frame_id="after"))["code"] == "session_closed"


async def test_invalid_field_keeps_the_prompt_and_changes_nothing(app: RunningApp) -> None:
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        error = await v.field("email", "ada-at-example")
        assert error["code"] == "invalid_field" and "email" in error["message"]
        ok = await v.field("email", "ada@example.com")
        assert ok == {"type": "ack", "id": ok["id"], "seq": 5}


async def test_free_text_is_stored_and_scanned_for_contacts(app: RunningApp) -> None:
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        ack = await v.message("just email me: ada@example.com")
        assert ack["type"] == "ack"
        bot = await v.expect("message")
        assert bot["prompt"]["field"] == "phone"


async def test_bad_frames_get_bad_frame_and_the_socket_stays_open(app: RunningApp) -> None:
    async with Visitor.connect(app.ws_url) as v:
        for raw in ["not json", '{"type":"dance"}', '{"type":"message","id":"x"}', "[]"]:
            await v.ws.send(raw)
            error = await v.expect("error")
            assert error["code"] == "bad_frame", raw
        await v.ws.send(b"\x00binary")
        assert (await v.expect("error"))["code"] == "bad_frame"
        await v.send({"type": "ping"})
        assert await v.expect("pong") == {"type": "pong"}
        assert (await v.field("name", "Still Here"))["type"] == "ack"


async def test_frames_over_max_frame_close_1009(app_factory: Any) -> None:
    running = await app_factory(max_frame=1024)
    async with Visitor.connect(running.ws_url) as v:
        await v.send({"type": "message", "id": "big", "text": "x" * 2000})
        with pytest.raises(ConnectionClosed) as info:
            await v.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == protocol.CloseCode.MESSAGE_TOO_BIG


async def _closed_with(ws: Any) -> int:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    assert info.value.rcvd is not None
    return int(info.value.rcvd.code)


async def test_first_frame_must_be_hello(app: RunningApp) -> None:
    async with websockets.connect(app.ws_url) as ws:
        await ws.send('{"type":"message","id":"1","text":"hi"}')
        assert json.loads(await ws.recv())["code"] == "bad_frame"
        assert await _closed_with(ws) == protocol.CloseCode.NO_HELLO


async def test_no_hello_in_time_closes_4400(app: RunningApp, monkeypatch: Any) -> None:
    monkeypatch.setattr(protocol, "HELLO_TIMEOUT", 0.3)
    async with websockets.connect(app.ws_url) as ws:
        assert await _closed_with(ws) == protocol.CloseCode.NO_HELLO


async def test_unknown_site_closes_4404(app: RunningApp) -> None:
    async with websockets.connect(app.ws_url) as ws:
        await ws.send('{"type":"hello","site":"nope"}')
        assert json.loads(await ws.recv())["code"] == "unknown_site"
        assert await _closed_with(ws) == protocol.CloseCode.UNKNOWN_SITE


async def test_disallowed_origin_is_refused_at_the_handshake(app_factory: Any) -> None:
    running = await app_factory(allowed_origins="https://shop.example")
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(
            running.ws_url + "?site=default", origin="https://evil.example"
        ):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    async with Visitor.connect(running.ws_url, origin="https://shop.example") as v:
        assert v.welcome["status"] == "open"
    # the server's own origin (the /demo page) is always allowed
    own = running.base
    async with Visitor.connect(running.ws_url, origin=own) as v:
        assert v.welcome["status"] == "open"


async def test_flood_is_rate_limited_then_closed_4429(app_factory: Any) -> None:
    running = await app_factory(msg_rate=2, msg_burst=3)
    async with Visitor.connect(running.ws_url) as v:
        for n in range(40):
            await v.send({"type": "message", "id": f"f{n}", "text": "spam"})
        codes = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                frame = await v.recv()
                if frame["type"] == "error":
                    codes.append(frame["code"])
        assert "rate_limited" in codes
        assert info.value.rcvd is not None and info.value.rcvd.code == protocol.CloseCode.TOO_MANY


async def test_too_many_sockets_from_one_ip_close_4429(app_factory: Any) -> None:
    running = await app_factory(max_conn_per_ip=2)
    async with Visitor.connect(running.ws_url), Visitor.connect(running.ws_url):
        async with websockets.connect(running.ws_url) as third:
            assert await _closed_with(third) == protocol.CloseCode.TOO_MANY


class RedisTap:
    """A TCP relay in front of Redis that records every packet sent to it.

    It runs its own event loop in a thread: the app asks Redis a blocking question at
    start (is it a cluster?), which would stall a relay on the test's loop.
    """

    def __init__(self, redis_url: str) -> None:
        from redis.connection import parse_url

        self.upstream = parse_url(redis_url)
        self.sent: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> str:
        self.thread.start()
        serving = asyncio.start_server(self._relay, "127.0.0.1", 0)
        server = asyncio.run_coroutine_threadsafe(serving, self.loop).result(5)
        port = server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/{self.upstream.get('db', 0)}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up = self.upstream
        if "path" in up:
            up_reader, up_writer = await asyncio.open_unix_connection(up["path"])
        else:
            up_reader, up_writer = await asyncio.open_connection(up["host"], up["port"])

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bool) -> None:
            while data := await src.read(65536):
                if log:
                    self.sent.append(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, up_writer, True), pump(up_reader, writer, False), return_exceptions=True
        )

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def test_a_visitor_message_is_one_redis_round_trip(app_factory: Any, redis_url: str) -> None:
    """Count the packets that reach Redis while a visitor sends four frames."""
    tap = RedisTap(redis_url)
    app = await app_factory(redis_url=tap.start())
    store = app.server.config.app.state.runtime.store  # type: ignore[union-attr]
    sha = store.script("visitor").sha.encode()
    loads: list[str] = []
    original_load = store.load_session

    async def counting_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(args[0])
        return await original_load(*args, **kwargs)

    try:
        async with Visitor.connect(app.ws_url) as v:
            tap.sent.clear()
            store.load_session = counting_load
            await v.field("name", "Ada")
            await v.message("hello there")
            await v.field("email", "ada@example.com")
            await v.field("email", "ada@example.com", frame_id="c3")  # duplicate
            del store.load_session
        visitor_packets = [p for p in tap.sent if sha in p]
        assert len(visitor_packets) == 4  # one round trip per frame ...
        assert all(p.count(b"EVALSHA") == 1 for p in visitor_packets)  # ... one script call
        assert loads == []  # and nothing read first
    finally:
        await app.stop()
        tap.stop()


async def test_ack_means_stored(app: RunningApp, rds: aioredis.Redis) -> None:
    async with Visitor.connect(app.ws_url) as v:
        await v.field("name", "Ada")
        session_id = v.welcome["session_id"]
        keys = await rds.keys(f"chatlead:*s:{session_id}:transcript")
        entries = [json.loads(e) for e in await rds.lrange(keys[0], 0, -1)]
        assert {"seq": 3, "from": "visitor", "text": "Ada", "field": "name"}.items() <= entries[
            2
        ].items()


async def test_a_client_that_never_reads_is_closed(app_factory: Any) -> None:
    """Its queue stops growing and its socket goes when it misses the keepalive."""
    running = await app_factory(
        uvicorn_options={"ws_ping_interval": 0.5, "ws_ping_timeout": 0.5},
        msg_rate=1_000_000,
        msg_burst=1_000_000,
    )
    ws = await websockets.connect(running.ws_url + "?site=default", max_queue=4)
    try:
        await ws.send('{"type":"hello","site":"default"}')
        ping = '{"type":"ping"}'

        async def flood() -> None:
            for _ in range(400_000):
                await ws.send(ping)

        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(flood(), 30)
    finally:
        await ws.close()
    runtime = running.server.config.app.state.runtime  # type: ignore[union-attr]
    await wait_for(lambda: len(runtime.hub) == 0, 10)


async def test_overlong_conversation_is_capped(app: RunningApp, monkeypatch: Any) -> None:
    from chatlead import store

    monkeypatch.setattr(store, "MAX_TRANSCRIPT", 6)
    async with Visitor.connect(app.ws_url) as v:
        answers = [await v.message(f"note {n}") for n in range(5)]
        assert [a["type"] for a in answers] == ["ack"] * 4 + ["error"]
        assert answers[-1]["code"] == "rate_limited"
        with pytest.raises(ConnectionClosed) as info:
            await v.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == protocol.CloseCode.TOO_MANY


async def test_the_message_bucket_is_per_session_across_sockets(app_factory: Any) -> None:
    """A second tab (or a second server process) does not get a second bucket."""
    running = await app_factory(msg_rate=0.5, msg_burst=3)
    async with Visitor.connect(running.ws_url) as first:
        resume = {
            "session_id": first.welcome["session_id"],
            "resume_token": first.welcome["resume_token"],
        }
        for n in range(3):
            assert (await first.message(f"one {n}"))["type"] == "ack"
        async with Visitor.connect(running.ws_url, **resume) as second:
            refused = await second.message("from the other tab", frame_id="tab2")
            assert refused["type"] == "error" and refused["code"] == "rate_limited"
    async with Visitor.connect(running.ws_url, **resume) as back:
        assert "from the other tab" not in [m["text"] for m in back.welcome["transcript"]]


async def test_lost_script_cache_is_reloaded_without_losing_a_reply(
    app: RunningApp, rds: aioredis.Redis
) -> None:
    async with Visitor.connect(app.ws_url) as v:
        assert (await v.field("name", "Ada"))["seq"] == 3
        await rds.script_flush()  # a Redis restart or failover loses loaded scripts
        ack = await v.field("email", "ada@example.com")
        assert ack["type"] == "ack" and ack["seq"] == 5
        prompt = await v.expect("message")  # the bot's next question still comes
        assert prompt["seq"] == 6 and prompt["prompt"]["field"] == "phone"
