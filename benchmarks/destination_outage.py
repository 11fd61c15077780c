"""One destination down for a minute while another is up: is the healthy one delayed?

Feeds completed sessions at a steady rate through the real store scripts to a site with
two destinations, ``up`` (a receiver that answers at once) and ``down`` (nothing listens
on its port for ``--down`` seconds, then a receiver does). One ``Deliverer`` runs in
this process. Reports, for ``up``, the time from each lead's event to its arrival (p50,
p99, max) during and after the outage, and for ``down`` how long after it came back its
backlog was delivered, and whether every lead arrived once.

    python benchmarks/destination_outage.py --down 60 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chatlead import keys
from chatlead.delivery import Deliverer
from chatlead.redis_client import connect_redis
from chatlead.routing import Routes
from chatlead.sites import Destination, Site
from chatlead.store import Store


class Arrivals:
    """A receiver on a port: when each webhook-id first arrived, and how often."""

    def __init__(self, port: int) -> None:
        self.first: dict[str, float] = {}
        self.count = 0
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", 0)))
                arrivals.count += 1
                arrivals.first.setdefault(self.headers["webhook-id"], time.time())
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 256
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def complete_one(store: Store, routes: Routes) -> str:
    sid = secrets.token_hex(12)
    meta = {"site": "bench", "idle": "3600000", "fwd": "never", "tok": "x", "uid": "u"}
    await store.create_session(sid, {**meta, "step": "name"}, [{"from": "bot", "text": "hi"}])
    await store.visitor_event(
        sid,
        "c1",
        1,
        {"from": "visitor", "text": "Ada", "field": "name"},
        [{"from": "bot", "text": "Thanks"}],
        {"name": "Ada"},
        "done",
        True,
        routes.to("bench", "lead.completed"),
    )
    return keys.completed_event(sid)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--down", type=float, default=60.0, help="seconds the second is down")
    parser.add_argument("--after", type=float, default=10.0, help="seconds fed after it is back")
    parser.add_argument("--rate", type=float, default=20.0, help="leads per second")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    up_port, down_port = free_port(), free_port()
    up = Arrivals(up_port)
    site = Site(
        id="bench",
        destinations=(
            Destination(name="up", url=f"http://127.0.0.1:{up_port}/", allow_private=True),
            Destination(name="down", url=f"http://127.0.0.1:{down_port}/", allow_private=True),
        ),
    )
    routes = Routes({"bench": site})
    store = Store(connect_redis(args.redis), 16, 3600)
    await store.redis.flushdb()
    wakeup, stop = asyncio.Event(), asyncio.Event()
    schedule = (0, 1, 2, 4, 8, 15, 15, 15, 15, 15, 15, 15, 15)
    deliverer = Deliverer(store, {"bench": site}, schedule, wakeup)
    task = asyncio.create_task(deliverer.run(stop))

    made: dict[str, float] = {}
    started = time.time()
    down: Arrivals | None = None
    back_at = 0.0
    while time.time() - started < args.down + args.after:
        if down is None and time.time() - started >= args.down:
            down, back_at = Arrivals(down_port), time.time()
        base = await complete_one(store, routes)
        made[base] = time.time()
        wakeup.set()
        await asyncio.sleep(1 / args.rate)
    fed_until = time.time()
    assert down is not None
    while len(down.first) < len(made) and time.time() - fed_until < 120:
        await asyncio.sleep(0.1)
    drained = time.time() - back_at
    stop.set()
    wakeup.set()
    await task

    waits = [up.first[f"{b}:up"] - t for b, t in made.items() if f"{b}:up" in up.first]
    outage = [up.first[f"{b}:up"] - t for b, t in made.items() if t < back_at]
    print(f"{len(made)} leads at {args.rate:g}/s; 'down' down for {args.down:g} s")
    print(
        f"up:   {len(waits)}/{len(made)} arrived ({up.count} requests); event -> arrival "
        f"p50 {statistics.median(waits) * 1000:.0f} ms, p99 {percentile(waits, 0.99) * 1000:.0f} ms"
        f", max {max(waits) * 1000:.0f} ms; during the outage p99 "
        f"{percentile(outage, 0.99) * 1000:.0f} ms"
    )
    print(
        f"down: {len(down.first)}/{len(made)} arrived ({down.count} requests), the backlog "
        f"{drained:.1f} s after it came back"
    )
    up.stop()
    down.stop()
    await store.redis.flushdb()
    await store.redis.aclose()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
