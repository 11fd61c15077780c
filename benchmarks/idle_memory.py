"""Server memory per idle widget connection.

Starts ``chatlead serve`` (its own process), opens N sockets from a separate client
process, each completing ``hello``/``welcome`` and then staying idle, and reports the
server's RSS growth per connection.

    python benchmarks/idle_memory.py --connections 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
from pathlib import Path

import websockets
from _chatlead import start_server


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_idle(url: str, count: int) -> list[object]:
    sockets: list[object] = []
    slots = asyncio.Semaphore(200)

    async def one() -> None:
        async with slots:
            ws = await websockets.connect(url, open_timeout=30, compression=None)
            await ws.send(json.dumps({"type": "hello", "site": "default"}))
            await ws.recv()
            sockets.append(ws)

    await asyncio.gather(*(one() for _ in range(count)))
    return sockets


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    port = 19000 + os.getpid() % 1000
    caps = str(args.connections * 2)
    settings = {"idle_timeout": "1h", "max_conn_per_ip": caps, "max_conn_per_site": caps}
    server = start_server(
        args.redis, port, settings, lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    )
    try:
        # warm up code paths so the baseline includes them
        warm = await open_idle(f"ws://127.0.0.1:{port}/ws?site=default", 50)
        for ws in warm:
            await ws.close()  # type: ignore[attr-defined]
        await asyncio.sleep(1)
        before = rss_kib(server.pid)
        sockets = await open_idle(f"ws://127.0.0.1:{port}/ws?site=default", args.connections)
        await asyncio.sleep(2)
        after = rss_kib(server.pid)
        per = (after - before) / args.connections
        print(
            f"{args.connections} idle connections: server RSS {before} KiB -> {after} KiB, "
            f"{per:.1f} KiB per connection (bar: <= 30 KiB)"
        )
        for ws in sockets:
            await ws.close()  # type: ignore[attr-defined]
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    asyncio.run(main())
