"""Slow clients against a real ``chatlead serve``: late request heads are closed.

One IP opens hundreds of half-sent requests and half-sent WebSocket upgrades; the
server closes each once ``HEADER_TIMEOUT`` passes, and a well-behaved widget still
connects and gets its acks meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from chatlead.listener import FD_RESERVE, MIN_CONCURRENCY, concurrency_limit

from tests.conftest import Visitor

TIMEOUT_S = 2.0
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
HALF_UPGRADE = (
    b"GET /ws?site=default HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
)


async def _half_sent(port: int, head: bytes) -> asyncio.Task[float]:
    """A connection that sends ``head`` and no more; the task ends when the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()

    async def closed_after() -> float:
        opened = time.monotonic()
        try:
            assert await reader.read() == b"", "the server answered a request it never got"
        finally:
            writer.close()
        return time.monotonic() - opened

    return asyncio.create_task(closed_after())


async def test_half_sent_heads_are_closed_while_a_visitor_chats(process_factory: Any) -> None:
    server = process_factory(header_timeout=f"{TIMEOUT_S}s").start()
    heads = [HALF_REQUEST, HALF_UPGRADE] * 250
    started = time.monotonic()
    slow = await asyncio.gather(*(_half_sent(server.port, head) for head in heads))
    async with Visitor.connect(server.ws_url) as visitor:
        assert (await visitor.field("name", "Ada Lovelace"))["type"] == "ack"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.base}/healthz")).status_code == 200
    assert time.monotonic() - started < TIMEOUT_S and not any(t.done() for t in slow)
    held = await asyncio.wait_for(asyncio.gather(*slow), TIMEOUT_S + 5)
    assert min(held) > TIMEOUT_S - 0.5 and max(held) < TIMEOUT_S + 3, (min(held), max(held))
    assert "fd_limit nofile=" in server.output()


async def test_the_next_request_on_a_keep_alive_connection_has_the_deadline_too(
    process_factory: Any,
) -> None:
    server = process_factory(header_timeout="1s").start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /heal")  # uvicorn's keep-alive timer stops at the first byte
    opened = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 4) == b""
    assert time.monotonic() - opened < 2.5
    writer.close()


def test_concurrency_limit_keeps_descriptors_for_redis_and_deliveries() -> None:
    assert concurrency_limit(20_000) == 20_000 - FD_RESERVE
    assert concurrency_limit(1024) == 1024 - FD_RESERVE
    assert concurrency_limit(256) == MIN_CONCURRENCY
