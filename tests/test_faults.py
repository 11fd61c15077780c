"""Redis restarts and server shutdowns: no false acks, nothing acked lost."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import redis.asyncio as aioredis
from chatlead.protocol import CloseCode
from websockets.exceptions import ConnectionClosed

from tests.conftest import FULL_CONVERSATION, OwnRedis, Receiver, Visitor, hook_env, wait_for

pytestmark = pytest.mark.slow


async def test_redis_outage_gives_errors_not_false_acks(
    own_redis: OwnRedis, app_factory: Any
) -> None:
    app = await app_factory(redis_url=own_redis.url)
    async with Visitor.connect(app.ws_url) as v:
        assert (await v.field("name", "Ada"))["type"] == "ack"
        own_redis.kill()
        answer = await v.field("email", "ada@example.com", frame_id="during-outage")
        assert answer["type"] == "error" and answer["code"] == "unavailable"
        with pytest.raises(ConnectionClosed) as info:
            await v.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == CloseCode.SERVICE_RESTART
    # new sockets are refused cleanly while Redis is down
    async with _refused(app.ws_url) as code:
        assert code == CloseCode.SERVICE_RESTART
    own_redis.start()
    resume = {"session_id": v.welcome["session_id"], "resume_token": v.welcome["resume_token"]}

    async def resumed() -> Any:
        try:
            async with Visitor.connect(app.ws_url, **resume) as back:
                return back.welcome
        except (TimeoutError, ConnectionClosed, KeyError):
            return None

    welcome = await wait_for(resumed, 15, interval=0.2)
    assert [f["name"] for f in welcome["fields"]] == ["name"]
    async with Visitor.connect(app.ws_url, **resume) as back:
        # the widget resends the frame that got no ack; now it is stored once
        assert (await back.field("email", "ada@example.com", frame_id="during-outage"))["seq"] == 5


class _refused:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> int:
        import json

        import websockets

        async with websockets.connect(self.url) as ws:
            # the server may refuse at connect time, before the hello arrives
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "hello", "site": "default"}))
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
        assert info.value.rcvd is not None
        return int(info.value.rcvd.code)

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_sigterm_closes_sockets_with_1012(process_factory: Any) -> None:
    server = process_factory().start()
    async with Visitor.connect(server.ws_url) as v:
        server.proc.terminate()
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await v.recv(timeout=15)
        assert info.value.rcvd is not None and info.value.rcvd.code == CloseCode.SERVICE_RESTART
    # uvicorn re-raises the signal once its graceful shutdown is done
    assert server.proc.wait(15) in (0, -15)
    assert "Application shutdown complete" in server.output()


async def test_sigterm_finishes_the_delivery_in_flight(
    process_factory: Any, receiver: Receiver, rds: aioredis.Redis
) -> None:
    receiver.delay = 1.5  # the CRM is slow: the lead is mid-delivery at SIGTERM
    server = process_factory(**hook_env(receiver)).start()
    async with Visitor.connect(server.ws_url) as v:
        for name, value in FULL_CONVERSATION:
            await v.field(name, value)
    await wait_for(lambda: receiver.requests, 10, interval=0.02)
    server.proc.terminate()
    assert server.proc.wait(25) in (0, -15)
    event = f"evt_{v.welcome['session_id']}_completed"
    [key] = await rds.keys(f"chatlead:*e:{event}")
    assert await rds.hget(key, "status") == "delivered"  # settled before exiting
    assert receiver.ids() == [event]
