"""A well-behaved widget's handshake and first ack while one IP holds a slowloris attack.

Starts ``chatlead serve`` (its own process, default ``HEADER_TIMEOUT`` 10 s). An
attacker process mounts ``--connections`` slow connections from 127.0.0.1, half of
them half-sent HTTP requests and half half-sent WebSocket upgrades, each trickling
one more header line every few seconds (classic slowloris) and reopened at once
when the server closes it, so the attack stays mounted for the whole run. Meanwhile
this process runs visitors one after another at ``--rate`` per second: WebSocket
handshake, ``hello``/``welcome``, one ``field`` and its ``ack``, timed from connect
to ack. Prints p50/p99 (bar: p99 <= 200 ms), how long the server let a slow
connection live, and the server's RSS and open descriptors.

    python benchmarks/slowloris.py --connections 3000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import time
from multiprocessing.connection import Connection
from pathlib import Path

import websockets
from _chatlead import start_server

HEADS = (
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n",
    b"GET /ws?site=default HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
)
TRICKLE_S = 4.0


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- the attacker (its own process) ------------------------------------------


async def _slow_connection(port: int, head: bytes, held: list[float], stop: asyncio.Event) -> None:
    """One slot of the attack: keep a slow connection open in it until ``stop``."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened = time.monotonic()
        writer.write(head)
        read = asyncio.ensure_future(reader.read())
        line = 0
        while not stop.is_set() and not read.done():
            await asyncio.wait({read}, timeout=TRICKLE_S)
            if not read.done():
                line += 1
                writer.write(f"X-Slow-{line}: {line}\r\n".encode())
        if read.done():
            held.append(time.monotonic() - opened)
        else:
            read.cancel()
        writer.close()


async def _attack(port: int, count: int, pipe: Connection) -> None:
    stop, held = asyncio.Event(), []
    slots = [
        asyncio.create_task(_slow_connection(port, HEADS[i % 2], held, stop)) for i in range(count)
    ]
    await asyncio.sleep(1)  # all connected (a local connect takes microseconds)
    pipe.send("mounted")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    stop.set()
    await asyncio.gather(*slots)
    pipe.send(held)


def attacker(port: int, count: int, pipe: Connection) -> None:
    raise_fd_limit()
    asyncio.run(_attack(port, count, pipe))


# --- the well-behaved visitor ------------------------------------------------------


async def visit(url: str, n: int) -> float:
    """Seconds from connect to the first ack."""
    started = time.perf_counter()
    async with websockets.connect(url, open_timeout=10, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "site": "default"}))
        while json.loads(await ws.recv())["type"] != "welcome":
            pass
        await ws.send(json.dumps({"type": "field", "id": f"f{n}", "name": "name", "value": "Ada"}))
        while json.loads(await ws.recv())["type"] != "ack":
            pass
        return time.perf_counter() - started


async def measure(url: str, seconds: float, rate: float) -> tuple[list[float], int]:
    """Visitors at a fixed rate (latency from each visitor's own start); failures counted."""
    latencies: list[float] = []
    failures = 0
    tasks = []
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        tasks.append(asyncio.create_task(visit(url, n)))
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException):
            failures += 1
        else:
            latencies.append(result)
    return latencies, failures


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=10, help="visitors per second")
    parser.add_argument(
        "--server-fd-limit",
        type=int,
        default=None,
        help="hard RLIMIT_NOFILE for the server (default: this shell's hard limit)",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    raise_fd_limit()
    port = 19000 + os.getpid() % 1000
    settings = {"new_sessions_per_ip": "1000000/min", "idle_timeout": "1h"}
    fd_limit = args.server_fd_limit
    server = start_server(
        args.redis,
        port,
        settings,
        None
        if fd_limit is None
        else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit)),
    )
    url = f"ws://127.0.0.1:{port}/ws?site=default"
    ours, theirs = multiprocessing.Pipe()
    attack = multiprocessing.Process(target=attacker, args=(port, args.connections, theirs))
    try:
        for n in range(20):  # warm up the code paths
            await visit(url, n)
        quiet, _ = await measure(url, 3, args.rate)
        rss_before, fds_before = rss_kib(server.pid), open_fds(server.pid)
        attack.start()
        assert ours.recv() == "mounted"
        fds_attacked, rss_attacked = open_fds(server.pid), rss_kib(server.pid)
        latencies, failures = await measure(url, args.seconds, args.rate)
        rss_after = rss_kib(server.pid)
        ours.send("stop")
        held = ours.recv()
        attack.join(30)
    finally:
        server.terminate()
        server.wait()
    print(f"without attack: p50 {pct(quiet, 0.5):.1f} ms, p99 {pct(quiet, 0.99):.1f} ms")
    print(
        f"during {args.connections} slowloris connections from one IP, {args.seconds:g} s, "
        f"{len(latencies)} visitors ({failures} failed): handshake+first ack "
        f"p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms (bar: p99 <= 200 ms)"
    )
    if held:
        print(
            f"slow connections closed by the server: {len(held)}, held "
            f"{statistics.median(held):.1f} s median, {max(held):.1f} s max"
        )
    print(
        f"server: open fds {fds_before} -> {fds_attacked} mounted; "
        f"RSS {rss_before} KiB -> {rss_attacked} KiB mounted -> {rss_after} KiB at the end"
    )


if __name__ == "__main__":
    asyncio.run(main())
