"""How soon after a visitor goes quiet is the lead.abandoned delivered?

Starts ``chatlead serve`` with ``CHATLEAD_IDLE_TIMEOUT`` (default 2s) and a webhook to
a local receiver, opens N sessions that each answer name + email and then go quiet,
and measures, per session, the time from its last ack to the webhook's arrival.

    python benchmarks/abandon_latency.py --sessions 50 --idle 2s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import websockets
from _chatlead import start_server
from chatlead.units import parse_duration

arrivals: dict[str, float] = {}


class BurstServer(ThreadingHTTPServer):
    # a real endpoint's listen backlog, not http.server's 5: 32 delivery
    # connections opening at once would otherwise wait on SYN retransmits
    request_queue_size = 128


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if body["type"] == "lead.abandoned":
            arrivals.setdefault(body["data"]["sessionId"], time.time())
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def quiet_visitor(url: str) -> tuple[str, float]:
    async with websockets.connect(url + "?site=default") as ws:
        await ws.send(json.dumps({"type": "hello", "site": "default"}))
        session_id = json.loads(await ws.recv())["session_id"]
        for n, (name, value) in enumerate([("name", "Ada"), ("email", "ada@example.com")]):
            await ws.send(
                json.dumps({"type": "field", "id": f"f{n}", "name": name, "value": value})
            )
            while json.loads(await ws.recv())["type"] != "ack":
                pass
        last_ack = time.time()
        while session_id not in arrivals:
            await asyncio.sleep(0.01)
        return session_id, arrivals[session_id] - last_ack


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--idle", default="2s")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    receiver = BurstServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = 18000 + os.getpid() % 1000
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    settings = {"idle_timeout": args.idle, "webhook_url": hook, "webhook_allow_private": "true"}
    server = start_server(args.redis, port, settings)
    try:
        results = await asyncio.gather(
            *(quiet_visitor(f"ws://127.0.0.1:{port}/ws") for _ in range(args.sessions))
        )
    finally:
        server.terminate()
        server.wait()
        receiver.shutdown()
    idle = parse_duration(args.idle)
    delays = sorted(delay for _, delay in results)
    median = statistics.median(delays)
    p90 = delays[int(len(delays) * 0.9) - 1]
    print(f"{args.sessions} sessions, idle timeout {idle:g}s")
    print(
        f"quiet -> lead.abandoned delivered: median {median:.2f}s, p90 {p90:.2f}s, max {delays[-1]:.2f}s"
    )
    print(f"over the timeout: median {median - idle:.2f}s (bar: <= 1.5s)")


if __name__ == "__main__":
    asyncio.run(main())
