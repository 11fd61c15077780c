"""A real chatlead server for the admin tests, and what they do with it.

Not a test module: the admin tests import from here (fixtures are in conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import redis
import uvicorn
import websockets
from chatlead.admin.csv import CSV_HEADER
from chatlead.app import create_app
from chatlead.config import Settings
from chatlead.sites import Site

from tests.conftest import admin_headers

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('CHATLEAD_API_TEST_DB', '14')}"
TOKEN = "test-admin-token-0123456789"
DELIVERY_KEYS = {
    "id",
    "event",
    "session_id",
    "site",
    "destination",
    "status",
    "attempts",
    "created_at",
    "next_attempt_at",
}
"""The fields of one delivery-log item (``/api/deliveries``, CONTRACT §5)."""


@dataclass
class Served:
    """A running chatlead server and a client for it."""

    url: str
    http: httpx.AsyncClient
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


def flush_db() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


@contextlib.asynccontextmanager
async def serve(
    *,
    token: str | None = TOKEN,
    sites: dict[str, Site] | None = None,
    redis_url: str = REDIS_URL,
    host: str = "127.0.0.1",
    **settings: Any,
) -> AsyncIterator[Served]:
    """Run the real app under uvicorn on a free port of ``host``."""
    config = Settings(
        redis_url=redis_url, idle_timeout=1.0, admin_token=token, host=host, **settings
    )
    app = create_app(config, sites)
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", ws_per_message_deflate=False)
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {token}"} if token else admin_headers(redis_url)
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            yield Served(url, http, config)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def visit(
    served: Served,
    answers: list[tuple[str, str]],
    *,
    site: str = "default",
    texts: tuple[str, ...] = (),
    submit: bool = False,
    page: str = "https://shop.example/pricing?utm_source=ads",
) -> str:
    """One visitor: hello, then ``field`` answers (and free ``message`` texts); returns the id."""
    async with websockets.connect(served.ws_url, origin=served.url) as ws:
        hello = {"type": "hello", "site": site, "page": {"url": page}}
        await ws.send(json.dumps(hello))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        frames: list[dict[str, Any]] = [
            {"type": "field", "id": f"f{n}", "name": name, "value": value}
            for n, (name, value) in enumerate(answers)
        ]
        frames += [{"type": "message", "id": f"m{n}", "text": t} for n, t in enumerate(texts)]
        if submit:
            frames.append({"type": "submit", "id": "s"})
        for frame in frames:
            await ws.send(json.dumps(frame))
            while True:
                reply = json.loads(await ws.recv())
                if reply["type"] == "ack" and reply["id"] == frame["id"]:
                    break
                assert reply["type"] != "error", reply
        RESUME_TOKENS[welcome["session_id"]] = welcome["resume_token"]
        return str(welcome["session_id"])


RESUME_TOKENS: dict[str, str] = {}
"""Resume token of every session :func:`visit` started, by session id."""


async def come_back(
    served: Served, session_id: str, text: str, *, frame: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The visitor resumes the session and writes ``text`` (or sends ``frame``) once the
    server acks it; returns the ``welcome``."""
    async with websockets.connect(served.ws_url, origin=served.url) as ws:
        hello = {
            "type": "hello",
            "site": "default",
            "session_id": session_id,
            "resume_token": RESUME_TOKENS[session_id],
        }
        await ws.send(json.dumps(hello))
        welcome: dict[str, Any] = json.loads(await ws.recv())
        await ws.send(json.dumps(frame or {"type": "message", "id": "back", "text": text}))
        while (reply := json.loads(await ws.recv()))["type"] != "ack":
            assert reply["type"] != "error", reply
        return welcome


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 10, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_status(served: Served, session_id: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        answer = await served.http.get(f"/api/sessions/{session_id}")
        body: dict[str, Any] = answer.json()
        return body if answer.status_code == 200 and body["status"] == status else None

    return await eventually(check, what=f"session {session_id} {status}")  # type: ignore[no-any-return]


async def wait_delivery(served: Served, event_id: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        answer = await served.http.get(f"/api/deliveries/{event_id}")
        body: dict[str, Any] = answer.json()
        return body if answer.status_code == 200 and body["status"] == status else None

    return await eventually(check, what=f"{event_id} {status}")  # type: ignore[no-any-return]


def csv_rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    assert reader.fieldnames == list(CSV_HEADER)
    return list(reader)
