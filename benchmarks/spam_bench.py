"""Spam defence on scripted traffic (CONTRACT §12): what reaches the destination.

Starts ``chatlead serve`` with a webhook to a local receiver and runs, in turn:

1. every rule of ``[sites.X.spam]`` on (``min_fill = "3s"``, ``max_leads_per_ip = 5``):
   - 1,000 bot sessions from one address, each filling the whole flow at once; a third
     fill the honeypot, a third give a disposable address (mailinator.com);
   - 1,000 human-like sessions, each from its own loopback address (127.1.x.y), one
     answer a second;
2. the defaults (honeypot and disposable only): 1,000 sessions as today's tests and
   scripts send them (instant, real domains, one address per 100 sessions).

A bot refused at ``hello`` (the new-session rate per network) counts as stopped too.

    python benchmarks/spam_bench.py --sessions 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
import websockets
from _chatlead import start_server

delivered: set[str] = set()


class BurstServer(ThreadingHTTPServer):
    request_queue_size = 256


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if body["type"] == "lead.completed":
            delivered.add(body["data"]["sessionId"])
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


ANSWERS = [("name", "Ada Lovelace"), ("email", ""), ("phone", ""), ("message", "A quote")]


async def chat(url: str, n: int, *, source: str, email: str, hp: str = "", pace: float = 0) -> str:
    """One conversation to the end; its session id, or "" when refused at hello."""
    try:
        async with websockets.connect(
            url + "?site=acme", local_addr=(source, 0), open_timeout=20
        ) as ws:
            hello: dict[str, Any] = {"type": "hello", "site": "acme"}
            if hp:
                hello["hp"] = hp
            await ws.send(json.dumps(hello))
            welcome = json.loads(await ws.recv())
            if welcome["type"] != "welcome":
                return ""
            for i, (name, value) in enumerate(ANSWERS):
                await asyncio.sleep(pace)
                frame = {"type": "field", "id": f"f{i}", "name": name,
                         "value": email if name == "email" else value}  # fmt: skip
                await ws.send(json.dumps(frame))
                while json.loads(await ws.recv())["type"] != "ack":
                    pass
            return str(welcome["session_id"])
    except (websockets.ConnectionClosed, websockets.InvalidStatus, OSError):
        return ""


async def crowd(calls: list[Any], at_once: int = 200) -> list[str]:
    gate = asyncio.Semaphore(at_once)

    async def one(call: Any) -> str:
        async with gate:
            return await call  # type: ignore[no-any-return]

    return list(await asyncio.gather(*(one(c) for c in calls)))


def bots(url: str, count: int) -> list[Any]:
    calls = []
    for n in range(count):
        kind = n % 3
        email = f"bot{n}@mailinator.com" if kind == 1 else f"bot{n}@example.com"
        calls.append(chat(url, n, source="127.0.0.1", email=email, hp="x" if kind == 0 else ""))
    return calls


def humans(url: str, count: int, pace: float) -> list[Any]:
    return [
        chat(url, n, source=f"127.1.{n // 250}.{n % 250 + 1}", email=f"v{n}@example.com", pace=pace)
        for n in range(count)
    ]


def today(url: str, count: int) -> list[Any]:
    return [
        chat(url, n, source=f"127.2.0.{n // 100 + 1}", email=f"v{n}@example.com")
        for n in range(count)
    ]


def flagged(redis_url: str) -> int:
    """Sessions flagged spam, from the per-day counters of every shard."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return sum(int(client.hget(key, "spam") or 0) for key in client.scan_iter("*stats:acme:*"))
    finally:
        client.close()


def run(
    redis_url: str, port: int, hook: str, spam: str, traffic: Any, waits: list[float]
) -> tuple[list[int], int]:
    """Run each crowd of ``traffic`` and count its sessions that reached the receiver
    (waiting up to its ``waits`` for the deliveries); and the sessions flagged spam."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(
            f'[sites.acme]\n[sites.acme.webhook]\nurl = "{hook}"\n[sites.acme.spam]\n{spam}\n'
        )
    settings = {"config": config.name, "webhook_allow_private": "true", "log_level": "warning"}
    server = start_server(redis_url, port, settings)
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        crowds = [asyncio.run(crowd(calls)) for calls in traffic(url)]
        reached = [settle(ids, wait) for ids, wait in zip(crowds, waits, strict=True)]
        refused = [sum(1 for s in ids if not s) for ids in crowds]
        print(f"  refused at hello: {refused}")
        return reached, flagged(redis_url)
    finally:
        server.terminate()
        server.wait()
        os.unlink(config.name)


def settle(sessions: list[str], seconds: float = 10) -> int:
    """How many of ``sessions`` reached the receiver (waiting for the deliveries)."""
    wanted = {s for s in sessions if s}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not wanted <= delivered:
        time.sleep(0.1)
    return len(wanted & delivered)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between a human's answers")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    receiver = BurstServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    port = 18500 + os.getpid() % 1000
    n = args.sessions
    try:
        every_rule = 'min_fill = "3s"\nmax_leads_per_ip = 5'
        print(f"every rule on: {n} bots from one address, then {n} paced humans")
        (bots_in, humans_in), spam = run(
            args.redis,
            port,
            hook,
            every_rule,
            lambda url: [bots(url, n), humans(url, n, args.pace)],
            [10, 60],
        )
        print(f"  bots reached the CRM: {bots_in}; humans reached the CRM: {humans_in}")
        print(f"  flagged spam: {spam}")
        print(f"defaults: {n} instant sessions, real domains, 100 per address")
        (today_in,), spam = run(args.redis, port, hook, "", lambda url: [today(url, n)], [60])
        print(f"  reached the CRM: {today_in}; flagged spam: {spam}")
    finally:
        receiver.shutdown()


if __name__ == "__main__":
    main()
