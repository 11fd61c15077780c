"""Server memory per idle widget connection, up to the machine's file limit.

Starts ``chatlead serve`` (its own process; it raises its soft ``RLIMIT_NOFILE`` to the
hard limit itself and logs both), then opens N sockets from ``--clients`` separate
client processes, each from its own loopback source address (127.0.0.2, 127.0.0.3, …)
so no client process or address runs out of ports. Each socket completes
``hello``/``welcome`` (a new session in Redis) and then stays idle. Reports the server's
RSS growth per connection, Redis' memory per session, the time to connect them all, and
the projection to 100,000 connections.

    python benchmarks/idle_memory.py --connections 15000 --clients 5

The per-network caps are the server's settings, raised for the test like an operator
behind a load balancer would (``MAX_CONN_PER_IP``, ``NEW_SESSIONS_PER_IP``,
``MAX_CONN_PER_SITE``): no code changes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import redis
import websockets
from _chatlead import ROOT

KIB = 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _raise_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _hold(
    url: str, source: str, count: int, ready: multiprocessing.Event, done: multiprocessing.Event
) -> None:  # type: ignore[valid-type]
    sockets: list[object] = []
    slots = asyncio.Semaphore(100)

    async def one() -> None:
        async with slots:
            for attempt in range(5):
                try:
                    ws = await websockets.connect(
                        url,
                        open_timeout=60,
                        compression=None,
                        local_addr=(source, 0),
                        ping_interval=None,
                    )
                    break
                except (OSError, websockets.InvalidHandshake, TimeoutError):
                    await asyncio.sleep(0.5 * (attempt + 1))
            else:
                raise RuntimeError(f"could not connect from {source}")
            await ws.send(json.dumps({"type": "hello", "site": "default"}))
            await ws.recv()
            sockets.append(ws)

    await asyncio.gather(*(one() for _ in range(count)))
    ready.set()  # type: ignore[attr-defined]
    while not done.is_set():  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)  # the sockets answer the server's pings meanwhile


def client(url: str, source: str, count: int, ready: object, done: object) -> None:
    _raise_limit()
    asyncio.run(_hold(url, source, count, ready, done))  # type: ignore[arg-type]


def serve(redis_url: str, port: int, connections: int) -> subprocess.Popen[bytes]:
    caps = str(connections * 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATLEAD_")}
    env.update(
        {
            "CHATLEAD_REDIS_URL": redis_url,
            "CHATLEAD_IDLE_TIMEOUT": "1h",
            "CHATLEAD_MAX_CONN_PER_IP": caps,
            "CHATLEAD_MAX_CONN_PER_SITE": caps,
            "CHATLEAD_NEW_SESSIONS_PER_IP": f"{caps}/min",
        }
    )
    subprocess.run(["redis-cli", "-u", redis_url, "flushdb"], check=True, capture_output=True)
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / "idle_memory_server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if b"ready sites=" in Path(log.name).read_bytes():
            time.sleep(0.5)
            return server
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError("chatlead did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=15_000)
    parser.add_argument("--clients", type=int, default=5, help="client processes")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    port = 19000 + os.getpid() % 1000
    url = f"ws://127.0.0.1:{port}/ws?site=default"
    server = serve(args.redis, port, args.connections)
    rds = redis.Redis.from_url(args.redis)
    ctx = multiprocessing.get_context("spawn")
    try:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / "idle_memory_server.log"
        limits = [line for line in log.read_text().splitlines() if "fd_limit" in line]
        # warm up the code paths so the baseline includes them
        warm_done = ctx.Event()
        warm_ready = ctx.Event()
        warm = ctx.Process(target=client, args=(url, "127.0.0.1", 50, warm_ready, warm_done))
        warm.start()
        warm_ready.wait(60)
        warm_done.set()
        warm.join(30)
        time.sleep(2)
        before, redis_before = rss_kib(server.pid), rds.info("memory")["used_memory"]
        done = ctx.Event()
        share = [args.connections // args.clients] * args.clients
        share[0] += args.connections - sum(share)
        started = time.monotonic()
        procs = []
        for i, count in enumerate(share):
            ready = ctx.Event()
            proc = ctx.Process(target=client, args=(url, f"127.0.0.{2 + i}", count, ready, done))
            proc.start()
            procs.append((proc, ready))
        for _proc, ready in procs:
            if not ready.wait(600):
                raise RuntimeError("clients did not connect in 10 minutes")
        connect_s = time.monotonic() - started
        time.sleep(3)
        after, redis_after = rss_kib(server.pid), rds.info("memory")["used_memory"]
        fds = open_fds(server.pid)
        per = (after - before) / args.connections
        redis_per = (redis_after - redis_before) / KIB / args.connections
        print(f"server limits: {limits}")
        print(
            f"{args.connections} idle connections from {args.clients} processes in "
            f"{connect_s:.1f} s; server open fds {fds}; server RSS {before} -> {after} KiB: "
            f"{per:.1f} KiB per connection (bar <= 20 KiB); Redis used_memory "
            f"{redis_before // KIB} -> {redis_after // KIB} KiB: {redis_per:.2f} KiB per session"
        )
        print(
            f"projection to 100,000: server {before / KIB + per * 100_000 / KIB:.0f} MiB in "
            f"one process (100,000 fds: over this machine's 20,000 hard limit, so several "
            f"processes), Redis {redis_per * 100_000 / KIB:.0f} MiB for the idle sessions"
        )
        done.set()
        for proc, _ready in procs:
            proc.join(60)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
