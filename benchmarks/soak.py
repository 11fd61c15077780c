"""A long run without leaks: idle widgets, steady chatting, sessions coming and going.

Starts ``chatlead serve`` (its own process, on a flushed Redis database), then from one
client process holds ``--idle`` idle widgets and keeps ``--active`` sessions chatting
at ``--rate`` messages a second in total (on a schedule: a late ack does not lower the
offered load). Idle widgets are let go when their session is abandoned and
replaced by new visitors. Active sessions churn: after 10–30 messages each one completes (answers
the flow), abandons (goes quiet; the sweeper flags it after ``IDLE_TIMEOUT``) or
resumes (disconnects, reconnects with its resume token and ``last_seq``, chats on), and
a finished session is replaced by a new one.

Every 10 s it samples the server's RSS and open file descriptors, Redis'
``used_memory``, the p99 ack latency of the last 10 s, and the server's own gauges
(open sockets, site slots). It fails (exit 1) when RSS grows more than 5 % from the
sample at 2 minutes to the last, when a gauge drifts away from the sockets actually
open, or when a message goes unacknowledged.

    python benchmarks/soak.py --minutes 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import websockets
from _chatlead import start_server

RSS_GROWTH_LIMIT = 0.05
SAMPLE_S = 10.0
WARMUP_S = 120.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Tally:
    sent: int = 0
    acked: int = 0
    unacked: int = 0
    completed: int = 0
    abandoned: int = 0
    resumed: int = 0
    idle_replaced: int = 0
    latencies: list[float] = field(default_factory=list)

    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99) - 1 if len(ordered) > 1 else 0] * 1000


async def connect(url: str, **hello: object) -> tuple[object, dict[str, object]]:
    for attempt in range(20):
        try:
            ws = await websockets.connect(url, open_timeout=30, compression=None)
            await ws.send(json.dumps({"type": "hello", "site": "default", **hello}))
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "welcome":
                    return ws, frame
        except (OSError, websockets.WebSocketException, TimeoutError):
            await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError("could not connect")


async def exchange(ws: object, frame: dict[str, object], tally: Tally) -> dict[str, object]:
    """Send one frame and wait for its ack (other frames are read and dropped)."""
    started = time.monotonic()
    tally.sent += 1
    await ws.send(json.dumps(frame))  # type: ignore[attr-defined]
    try:
        async with asyncio.timeout(10):
            while True:
                reply = json.loads(await ws.recv())  # type: ignore[attr-defined]
                if reply.get("type") in ("ack", "error") and reply.get("id") == frame["id"]:
                    break
    except TimeoutError:
        tally.unacked += 1
        return {}
    if reply["type"] == "ack":
        tally.acked += 1
        tally.latencies.append(time.monotonic() - started)
    else:
        tally.unacked += 1
    return reply


async def active(url: str, n: int, interval: float, tally: Tally, stop: asyncio.Event) -> None:
    """One seat of the active sessions: a chain of sessions, each ending in a churn."""
    rnd = random.Random(n)
    await asyncio.sleep(rnd.random() * interval)
    while not stop.is_set():
        ws, welcome = await connect(url)
        sid, token, seq = welcome["session_id"], welcome["resume_token"], int(welcome["seq"])
        ending = rnd.choice(("complete", "abandon", "resume"))
        count = rnd.randint(10, 30)
        k = 0
        next_at = time.monotonic()
        for i in range(count):
            if stop.is_set():
                break
            if ending == "resume" and i == count // 2:
                await ws.close()  # type: ignore[attr-defined]
                ws, _ = await connect(url, session_id=sid, resume_token=token, last_seq=seq)
                tally.resumed += 1
            k += 1
            reply = await exchange(ws, {"type": "message", "id": f"m{k}", "text": f"hi {i}"}, tally)
            seq = int(reply.get("seq", seq))
            next_at += interval  # on a schedule: a slow ack does not lower the offered rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if ending == "complete" and not stop.is_set():
            for name, value in (
                ("name", "Soak Test"),
                ("email", f"soak{n}@example.com"),
                ("phone", "+1 202 555 0143"),
                ("message", "done"),
            ):
                k += 1
                await exchange(
                    ws, {"type": "field", "id": f"f{k}", "name": name, "value": value}, tally
                )
            tally.completed += 1
        elif ending == "abandon":
            tally.abandoned += 1
        await ws.close()  # type: ignore[attr-defined]


async def idle(url: str, n: int, tally: Tally, stop: asyncio.Event) -> None:
    """One idle widget seat: a visitor opens the chat and never writes. The server lets
    the socket go once its session is abandoned (``IDLE_TIMEOUT``; the widget connects
    again only when its visitor writes), and a new visitor takes the seat up to 20 s
    later (so the first cohort's common timeout spreads out)."""
    rnd = random.Random(-n)
    while not stop.is_set():
        ws, _welcome = await connect(url)
        closed = asyncio.ensure_future(ws.wait_closed())  # type: ignore[attr-defined]
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not closed.done():
            closed.cancel()
            await ws.close()  # type: ignore[attr-defined]
            return
        stopped.cancel()
        tally.idle_replaced += 1
        await asyncio.sleep(rnd.random() * 20)


def gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--active", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500, help="messages per second in all")
    parser.add_argument("--idle-timeout", default="2m")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--out", default=None, help="write the samples as JSON here")
    parser.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds before RSS counts")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = 19500 + os.getpid() % 400
    base, url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
    server = start_server(
        args.redis,
        port,
        {
            "idle_timeout": args.idle_timeout,
            "max_conn_per_ip": "20000",
            "new_sessions_per_ip": "100000/min",
            "admin_token": "soak-admin-token-0123456789abcdef",
            "metrics_public": "true",
        },
    )
    rds = redis.Redis.from_url(args.redis, decode_responses=True)
    async with httpx.AsyncClient(base_url=base) as http:  # start_server waited for /readyz
        tally = Tally()
        stop = asyncio.Event()
        idlers = [asyncio.create_task(idle(url, n, tally, stop)) for n in range(args.idle)]
        while int(gauge((await http.get("/metrics")).text, "chatlead_connections")) < args.idle:
            await asyncio.sleep(0.5)
        interval = args.active / args.rate
        seats = [
            asyncio.create_task(active(url, n, interval, tally, stop)) for n in range(args.active)
        ]
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        print("t_s  rss_kib  fds  redis_kib  p99_ms  msg/s  sockets  site_slots")
        last_acked = 0
        while time.monotonic() - started < args.minutes * 60:
            await asyncio.sleep(SAMPLE_S)
            metrics = (await http.get("/metrics")).text
            sample = {
                "t": round(time.monotonic() - started),
                "rss_kib": rss_kib(server.pid),
                "fds": len(os.listdir(f"/proc/{server.pid}/fd")),
                "redis_kib": int(rds.info("memory")["used_memory"]) // 1024,
                "p99_ms": round(tally.p99_ms(), 1),
                "msg_s": round((tally.acked - last_acked) / SAMPLE_S),
                "sockets": gauge(metrics, "chatlead_connections"),
                "site_slots": rds.zcard("chatlead:conns:site:default"),
            }
            last_acked = tally.acked
            tally.latencies.clear()
            samples.append(sample)
            print("  ".join(str(sample[k]) for k in sample), flush=True)
        stop.set()
        await asyncio.wait([*seats, *idlers], timeout=30)
        await asyncio.sleep(2)
        metrics = (await http.get("/metrics")).text
        left_sockets = gauge(metrics, "chatlead_connections")
        left_slots = rds.zcard("chatlead:conns:site:default")
    server.terminate()
    server.wait()

    warm = next((s for s in samples if s["t"] >= args.warmup), samples[-1])
    growth = samples[-1]["rss_kib"] / warm["rss_kib"] - 1
    problems = []
    if growth > RSS_GROWTH_LIMIT:
        problems.append(f"RSS grew {growth:.1%} after {args.warmup:.0f} s (limit 5 %)")
    if tally.unacked:
        problems.append(f"{tally.unacked} messages not acknowledged")
    if left_sockets or left_slots:
        problems.append(f"after every socket closed: {left_sockets} sockets, {left_slots} slots")
    print(
        f"\n{args.minutes:g} min: {tally.acked} acked of {tally.sent}, {tally.completed} "
        f"completed, {tally.abandoned} abandoned, {tally.resumed} resumed, "
        f"{tally.idle_replaced} idle widgets let go and replaced; RSS "
        f"{warm['rss_kib']} KiB at {warm['t']} s -> {samples[-1]['rss_kib']} KiB "
        f"({growth:+.1%}); fds {min(s['fds'] for s in samples)}-{max(s['fds'] for s in samples)}; "
        f"p99 ack max {max(s['p99_ms'] for s in samples)} ms; after close: {left_sockets:g} "
        f"sockets, {left_slots} slots"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"samples": samples, "problems": problems}, indent=1))
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
