"""``chatlead serve --workers 2``: one port, two processes, one deployment."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import FULL_CONVERSATION, Receiver, Visitor, hook_env, metric_value, wait_for

pytestmark = pytest.mark.slow

VISITORS = 12
ADMIN_TOKEN = "workers-test-admin-token-0123456789"
SCRAPER = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_two_workers_serve_visitors_deliver_once_and_report_together(
    process_factory: Any, receiver: Receiver
) -> None:
    server = process_factory(**hook_env(receiver), admin_token=ADMIN_TOKEN).start(
        "serve", "--workers", "2"
    )

    async def converse() -> str:
        async with Visitor.connect(server.ws_url) as v:
            for name, value in FULL_CONVERSATION:
                assert (await v.field(name, value))["type"] == "ack"
            await v.expect("lead")
            return str(v.welcome["session_id"])

    async with Visitor.connect(server.ws_url) as idle:
        sessions = await asyncio.gather(*(converse() for _ in range(VISITORS)))
        async with httpx.AsyncClient() as http:

            async def only_the_idle_one_open() -> str | None:
                text = (await http.get(server.base + "/metrics", headers=SCRAPER)).text
                # the finished visitors' closes reach their worker a moment after ours
                return text if metric_value(text, "chatlead_connections") == 1 else None

            live = await wait_for(only_the_idle_one_open, 5)
        assert metric_value(live, "chatlead_sessions_open") == 1
        assert idle.welcome["status"] == "open"
    await wait_for(lambda: len(receiver.events) >= VISITORS, 15)
    await asyncio.sleep(0.5)
    assert sorted(e["data"]["sessionId"] for e in receiver.events) == sorted(sessions)
    async with httpx.AsyncClient() as http:
        # whichever worker answers, the counts are of both
        for _ in range(4):
            text = (await http.get(server.base + "/metrics", headers=SCRAPER)).text
            answers = metric_value(text, 'chatlead_frames_total{type="field"}')
            assert answers == VISITORS * len(FULL_CONVERSATION)
            assert metric_value(text, 'chatlead_sessions_total{event="completed"}') == VISITORS


def _workers(pid: int) -> list[int]:
    """uvicorn's worker processes under ``pid`` (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _serving(port: int) -> int:
    """The pid of a process with an established socket on ``port`` (``ss -tnp``)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"pid=(\d+)", out)
    assert match, out
    return int(match.group(1))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
async def test_workers_stop_when_their_parent_is_killed(process_factory: Any) -> None:
    server = process_factory(admin_token=ADMIN_TOKEN).start("serve", "--workers", "2")
    assert server.proc is not None
    workers = _workers(server.proc.pid)
    assert len(workers) == 2
    server.kill()  # SIGKILL: the parent gets no chance to stop them
    await wait_for(lambda: not any(_alive(pid) for pid in workers), 20)


async def test_a_restarted_worker_clears_the_dead_ones_connections(process_factory: Any) -> None:
    server = process_factory(admin_token=ADMIN_TOKEN).start("serve", "--workers", "2")
    assert server.proc is not None
    sockets = [await websockets.connect(server.ws_url + "?site=default") for _ in range(6)]
    try:
        for ws in sockets:
            await ws.send(json.dumps({"type": "hello", "site": "default"}))
            assert json.loads(await ws.recv())["type"] == "welcome"
        victim = _serving(server.port)  # the worker holding (some of) the sockets
        os.kill(victim, signal.SIGKILL)  # uvicorn starts another in its place
        alive = 0
        for ws in sockets:
            try:
                await asyncio.wait_for(ws.recv(), 1)
            except TimeoutError:
                alive += 1  # still open, on the other worker
            except websockets.ConnectionClosed:
                pass
        assert alive < len(sockets)  # the dead worker had some of them
        await wait_for(lambda: len(_workers(server.proc.pid)) == 2, 20)

        async def connections() -> float:
            async with httpx.AsyncClient() as http:
                return metric_value(
                    (await http.get(server.base + "/metrics", headers=SCRAPER)).text,
                    "chatlead_connections",
                )

        await wait_for(lambda: _is(connections(), alive), 20, interval=0.2)
    finally:
        for ws in sockets:
            await ws.close()


async def _is(value: Any, expected: float) -> bool:
    return await value == expected
