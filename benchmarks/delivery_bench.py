"""Delivery throughput of one worker process to a local receiver.

Seeds N completed sessions (each with a lead.completed event in the outbox, one
copy per destination of the site) with the real store scripts, then runs one
``Deliverer`` in this process until the outbox is empty, and reports deliveries/s
and leads/s. The receiver (a raw ASGI app under uvicorn, its own process) is
measured alone first with the same HTTP client and concurrency, so its ceiling is
known.

    python benchmarks/delivery_bench.py --events 5000 --redis redis://127.0.0.1:6379/15
    python benchmarks/delivery_bench.py --events 2000 --destinations 3   # fan-out
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from chatlead import keys
from chatlead.delivery import CONCURRENCY, Deliverer
from chatlead.redis_client import connect_redis
from chatlead.routing import Routes
from chatlead.sites import Destination, Site
from chatlead.store import Store

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def receiver_ceiling(url: str, requests: int) -> float:
    """The receiver alone: CONCURRENCY loops, one httpx client each (as the worker)."""
    left = list(range(requests))
    headers = {"content-type": "application/json"}

    async def loop() -> None:
        async with httpx.AsyncClient(timeout=15) as http:
            while left:
                left.pop()
                await http.post(url, content=b'{"x":1}', headers=headers)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
    return requests / (time.perf_counter() - started)


async def seed(store: Store, count: int, routes: Routes) -> None:
    meta = {
        "site": "bench",
        "idle": "3600000",
        "fwd": "never",
        "tok": "x",
        "uid": "u",
        "step": "name",
    }
    ids = [secrets.token_hex(12) for _ in range(count)]
    for start in range(0, count, 500):
        chunk = ids[start : start + 500]
        await asyncio.gather(
            *(store.create_session(s, meta, [{"from": "bot", "text": "hi"}]) for s in chunk)
        )
        await asyncio.gather(
            *(
                store.visitor_event(
                    s,
                    "c1",
                    1,
                    {"from": "visitor", "text": "Ada", "field": "name"},
                    [{"from": "bot", "text": "Thanks"}],
                    {"name": "Ada"},
                    "done",
                    True,
                    routes.to("bench", "lead.completed"),
                )
                for s in chunk
            )
        )


async def outbox_depth(store: Store) -> int:
    async with store.redis.pipeline(transaction=False) as pipe:
        for shard in range(store.shards):
            pipe.zcard(keys.outbox_due(shard))
        return sum(await pipe.execute())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--destinations", type=int, default=1, help="destinations per site")
    args = parser.parse_args()
    deliveries = args.events * args.destinations

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "_receiver.py"), str(port)])
    url = f"http://127.0.0.1:{port}/hook"
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/count")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        ceiling = await receiver_ceiling(url, args.events)

        store = Store(connect_redis(args.redis), 16, 3600)
        await store.redis.flushdb()
        destinations = [Destination(url=url, allow_private=True)] + [
            Destination(name=f"crm-{n}", url=url, allow_private=True)
            for n in range(2, args.destinations + 1)
        ]
        site = Site(id="bench", destinations=tuple(destinations))
        await seed(store, args.events, Routes({"bench": site}))
        wakeup, stop = asyncio.Event(), asyncio.Event()
        deliverer = Deliverer(store, {"bench": site}, (0, 1, 1), wakeup)
        started = time.perf_counter()
        task = asyncio.create_task(deliverer.run(stop))
        while await outbox_depth(store):
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        stop.set()
        wakeup.set()
        await task
        received = int(httpx.get(f"http://127.0.0.1:{port}/count").text) - args.events
        await store.redis.flushdb()
        await store.redis.aclose()
    finally:
        proc.terminate()
        proc.wait()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"receiver alone (httpx, {CONCURRENCY} concurrent): {ceiling:,.0f} req/s")
    print(
        f"one worker, {args.destinations} destination(s): {args.events} leads, "
        f"{deliveries} deliveries in {elapsed:.2f} s = {deliveries / elapsed:,.0f} deliveries/s, "
        f"{args.events / elapsed:,.0f} leads/s (receiver got {received})"
    )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())  # the loop chatlead runs on
