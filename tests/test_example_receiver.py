"""examples/receiver.py as a business runs it: its own process, fed by the real app."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import (
    FULL_CONVERSATION,
    ROOT,
    SECRET,
    Visitor,
    free_port,
    wait_for,
)

TOKEN = "receiver-test-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class ExampleReceiver:
    proc: subprocess.Popen[str]
    url: str
    db: Path
    log: Path

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return conn.execute(sql).fetchall()

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def example_receiver(tmp_path: Path) -> Iterator[ExampleReceiver]:
    port = free_port()
    db, log = tmp_path / "leads.sqlite3", tmp_path / "receiver.log"
    env = {**os.environ, "RECEIVER_SECRET": SECRET}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "receiver.py"), "--port", str(port)]
            + ["--db", str(db), "--max-body", "65536"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    receiver = ExampleReceiver(proc, f"http://127.0.0.1:{port}/hook", db, log)
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, f"receiver exited: {receiver.output()}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        assert time.monotonic() < deadline, f"receiver not listening: {receiver.output()}"
        time.sleep(0.05)
    yield receiver
    proc.terminate()
    proc.wait(10)


def _delivered(http: httpx.AsyncClient, base: str, event_id: str, count: int) -> Any:
    """A condition for ``wait_for``: the event's attempts once it has ``count`` of them."""

    async def check() -> list[dict[str, Any]] | None:
        answer = await http.get(f"{base}/api/deliveries/{event_id}", headers=AUTH)
        if answer.status_code != 200:
            return None
        item: dict[str, Any] = answer.json()
        attempts: list[dict[str, Any]] = item["attempts"]
        return attempts if item["status"] == "delivered" and len(attempts) >= count else None

    return check


async def test_a_completed_chat_is_one_lead_even_when_replayed(
    app_factory: Any, example_receiver: ExampleReceiver, http: httpx.AsyncClient
) -> None:
    app = await app_factory(
        webhook_url=example_receiver.url,
        webhook_secret=SECRET,
        webhook_allow_private=True,
        admin_token=TOKEN,
    )
    async with Visitor.connect(app.ws_url) as visitor:
        for name, value in FULL_CONVERSATION:
            assert (await visitor.field(name, value))["type"] == "ack"
        await visitor.expect("lead")
    session_id = visitor.welcome["session_id"]
    event_id = f"evt_{session_id}_completed"
    await wait_for(_delivered(http, app.base, event_id, 1))

    # the same delivery again: same webhook-id, freshly signed
    replayed = await http.post(f"{app.base}/api/deliveries/{event_id}/replay", headers=AUTH)
    assert replayed.status_code == 202, replayed.text
    attempts = await wait_for(_delivered(http, app.base, event_id, 2))
    # both were verified and answered 2xx; the second one changed nothing
    assert [a["status_code"] for a in attempts] == [200, 200]
    assert example_receiver.rows("SELECT id, type FROM webhooks") == [(event_id, "lead.completed")]
    leads = example_receiver.rows("SELECT session_id, status, name, email, phone, lead FROM leads")
    assert len(leads) == 1
    sid, status, name, email, phone, lead = leads[0]
    assert (sid, status, name, email, phone) == (
        session_id,
        "completed",
        "Ada Lovelace",
        "ada@example.com",
        "+12025550143",
    )
    assert json.loads(lead)["isAbandoned"] is False
    lines = example_receiver.output().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["stored", "lead.completed"],
        ["duplicate", "lead.completed"],
    ], lines


async def test_a_test_event_is_acknowledged_but_not_saved_as_a_lead(
    app_factory: Any, example_receiver: ExampleReceiver, http: httpx.AsyncClient
) -> None:
    app = await app_factory(
        webhook_url=example_receiver.url,
        webhook_secret=SECRET,
        webhook_allow_private=True,
        admin_token=TOKEN,
    )
    queued = await http.post(f"{app.base}/api/sites/default/test-event", headers=AUTH)
    assert queued.status_code == 202, queued.text
    event_id = queued.json()["id"]
    attempts = await wait_for(_delivered(http, app.base, event_id, 1))
    assert attempts[0]["status_code"] == 200
    assert example_receiver.rows("SELECT id, type FROM webhooks") == [(event_id, "lead.test")]
    assert example_receiver.rows("SELECT count(*) FROM leads") == [(0,)]


def _signed(body: str, msg_id: str = "msg_1") -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body),
    }


async def test_forged_garbled_and_oversized_bodies_are_refused(
    example_receiver: ExampleReceiver, http: httpx.AsyncClient
) -> None:
    body = json.dumps({"type": "lead.completed", "timestamp": "x", "data": {"sessionId": "s"}})
    forged = await http.post(
        example_receiver.url, content=body.replace("s", "t"), headers=_signed(body)
    )
    assert forged.status_code == 401
    unsigned = await http.post(example_receiver.url, content=body)
    assert unsigned.status_code == 401
    not_json = await http.post(example_receiver.url, content="{", headers=_signed("{"))
    assert not_json.status_code == 400
    big = "x" * 70_000  # over the --max-body of 65536 the fixture gives
    declared = await http.post(example_receiver.url, content=big, headers=_signed(big))
    assert declared.status_code == 413

    async def chunks() -> Any:  # no content-length: the cap holds while reading
        for _ in range(70):
            yield b"x" * 1000

    chunked = await http.post(example_receiver.url, content=chunks(), headers=_signed(big))
    assert chunked.status_code == 413
    assert example_receiver.rows("SELECT count(*) FROM webhooks") == [(0,)]
