"""Reminder emails end to end (CONTRACT §11): how late they arrive, and what a crash
mid-send does.

Starts ``chatlead serve`` with ``IDLE_TIMEOUT`` 2s and reminders ``["2s", "4s"]`` and a
real SMTP server (aiosmtpd) here; N visitors give an email and go quiet.

- ``--mode timing``: per session, when each reminder reached the SMTP server after its
  due time (the abandonment, on Redis' clock, plus its delay).
- ``--mode kill``: the SMTP server answers each message 0.3 s after taking it, and the
  server is SIGKILLed 0.15 s into each reminder step's wave and started again: the
  messages in flight were taken but never recorded as sent, and are sent again once
  their lease ends. Every (session, step) must arrive, under exactly one distinct
  ``Message-ID``.

    python benchmarks/reminder_bench.py --sessions 50 --mode timing
    python benchmarks/reminder_bench.py --sessions 50 --mode kill
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import tempfile
import time
from collections import defaultdict
from email import message_from_bytes
from email.policy import default as email_policy
from typing import Any

import redis
import websockets
from _chatlead import start_server
from aiosmtpd.controller import Controller
from chatlead import keys
from chatlead.formats.reminder import message_id

SENDER = "Acme <hello@acme.example>"
DELAYS_S = (2.0, 4.0)


class Collector:
    """Every message the SMTP server takes: (time, Message-ID)."""

    def __init__(self, answer_after_s: float) -> None:
        self.seen: list[tuple[float, str]] = []
        self.on_message: Any = None
        self.answer_after_s = answer_after_s
        """A slow server: the message is taken, its ``250`` comes this much later."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=email_policy)
        self.seen.append((time.time(), str(message["Message-ID"])))
        if self.on_message is not None:
            self.on_message()
        await asyncio.sleep(self.answer_after_s)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _leave(url: str, n: int) -> str:
    async with websockets.connect(url + "?site=acme") as ws:
        await ws.send(json.dumps({"type": "hello", "site": "acme"}))
        welcome = json.loads(await ws.recv())
        for i, (name, value) in enumerate((("name", "Ada"), ("email", f"v{n}@example.com"))):
            await ws.send(
                json.dumps({"type": "field", "id": f"f{i}", "name": name, "value": value})
            )
            while json.loads(await ws.recv())["type"] != "ack":
                pass
    return str(welcome["session_id"])


def _expected(sessions: list[str]) -> dict[str, tuple[str, int]]:
    """Message-ID -> (session, step) for every reminder that should arrive."""
    return {
        message_id(keys.reminder_event(sid, 1, step), SENDER): (sid, step)
        for sid in sessions
        for step in range(1, len(DELAYS_S) + 1)
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--mode", choices=("timing", "kill"), default="timing")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    # kill mode: the SMTP server holds each 250 for 0.3 s, and the kill lands 0.15 s into a
    # wave, so the messages in flight then were taken by the SMTP server and not recorded
    collector = Collector(0.3 if args.mode == "kill" else 0.0)
    smtp = Controller(collector, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    port = _free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(
            '[sites.acme]\nidle_timeout = "2s"\n[sites.acme.recovery]\n'
            f'reminders = ["2s", "4s"]\nfrom = "{SENDER}"\n'
        )
    settings = {
        "config": config.name,
        "smtp_url": f"smtp://127.0.0.1:{smtp.port}",
        "webhook_allow_private": "true",
        "public_url": f"http://127.0.0.1:{port}",
        "log_level": "warning",
    }
    server = start_server(args.redis, port, settings, preexec=os.setpgrp)
    kills = 0
    try:
        url = f"ws://127.0.0.1:{port}/ws"

        async def visitors() -> list[str]:
            return list(await asyncio.gather(*(_leave(url, n) for n in range(args.sessions))))

        sessions = asyncio.run(visitors())
        expected = _expected(sessions)
        waves_killed: set[int] = set()
        restart_at: list[float] = []

        def kill_during_wave() -> None:
            # the first message of a step's wave: kill the server 0.15 s later, mid-wave
            step = expected.get(collector.seen[-1][1], ("", 0))[1]
            if args.mode == "kill" and step and step not in waves_killed:
                waves_killed.add(step)
                restart_at.append(time.monotonic() + 0.15)

        collector.on_message = kill_during_wave
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            arrived = {mid for _, mid in collector.seen if mid in expected}
            if len(arrived) == len(expected):
                break
            if restart_at and time.monotonic() >= restart_at[0]:
                restart_at.pop(0)
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                kills += 1
                server = start_server(args.redis, port, settings, os.setpgrp, flush=False)
            time.sleep(0.02)
        _report(args, collector, expected, sessions, kills)
    finally:
        server.terminate()
        server.wait()
        smtp.stop()
        os.unlink(config.name)


def _report(
    args: Any,
    collector: Collector,
    expected: dict[str, tuple[str, int]],
    sessions: list[str],
    kills: int,
) -> None:
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    left = {
        sid: int(client.hget(keys.session(keys.shard_of(sid, 16), sid), "abandoned_at") or 0)
        for sid in sessions
    }
    client.close()
    first: dict[str, float] = {}
    copies: dict[str, int] = defaultdict(int)
    for at, mid in collector.seen:
        if mid in expected:
            first.setdefault(mid, at)
            copies[mid] += 1
    per_step: dict[int, list[float]] = defaultdict(list)
    for mid, (sid, step) in expected.items():
        if mid in first:
            per_step[step].append(first[mid] - left[sid] / 1000 - DELAYS_S[step - 1])
    missing = len(expected) - len(first)
    unexpected = len({mid for _, mid in collector.seen if mid not in expected})
    print(f"mode {args.mode}: {args.sessions} sessions, {kills} SIGKILLs")
    print(f"  (session, step) pairs: {len(expected)}, arrived {len(first)}, missing {missing}")
    print(f"  distinct Message-IDs not expected: {unexpected} (one id per step: {unexpected == 0})")
    print(f"  messages taken by SMTP: {len(collector.seen)} (resent copies: "
          f"{len(collector.seen) - len(first)})")  # fmt: skip
    for step, late in sorted(per_step.items()):
        late.sort()
        print(
            f"  step {step}: after its due time median {statistics.median(late):.2f} s, "
            f"p95 {late[int(0.95 * (len(late) - 1))]:.2f} s, max {late[-1]:.2f} s"
        )


if __name__ == "__main__":
    main()
