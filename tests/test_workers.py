"""``chatlead serve --workers 2``: one port, two processes, one deployment."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import FULL_CONVERSATION, SECRET, Receiver, Visitor, wait_for
from tests.test_metrics import _value

pytestmark = pytest.mark.slow

VISITORS = 12


async def test_two_workers_serve_visitors_deliver_once_and_report_together(
    process_factory: Any, receiver: Receiver
) -> None:
    server = process_factory(
        webhook_url=receiver.url, webhook_secret=SECRET, webhook_allow_private="true"
    ).start("serve", "--workers", "2")

    async def converse() -> str:
        async with Visitor.connect(server.ws_url) as v:
            for name, value in FULL_CONVERSATION:
                assert (await v.field(name, value))["type"] == "ack"
            await v.expect("lead")
            return str(v.welcome["session_id"])

    async with Visitor.connect(server.ws_url) as idle:
        sessions = await asyncio.gather(*(converse() for _ in range(VISITORS)))
        async with httpx.AsyncClient() as http:
            live = (await http.get(server.base + "/metrics")).text
        assert _value(live, "chatlead_connections") == 1  # the idle one, whichever worker
        assert _value(live, "chatlead_sessions_open") == 1
        assert idle.welcome["status"] == "open"
    await wait_for(lambda: len(receiver.events) >= VISITORS, 15)
    await asyncio.sleep(0.5)
    assert sorted(e["data"]["sessionId"] for e in receiver.events) == sorted(sessions)
    async with httpx.AsyncClient() as http:
        # whichever worker answers, the counts are of both
        for _ in range(4):
            text = (await http.get(server.base + "/metrics")).text
            answers = _value(text, 'chatlead_frames_total{type="FieldAnswer"}')
            assert answers == VISITORS * len(FULL_CONVERSATION)
            assert _value(text, 'chatlead_sessions_total{event="completed"}') == VISITORS
