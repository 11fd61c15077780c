"""Visitor <-> agent delivery latency of taken-over chats (CONTRACT §10).

Starts one or two ``chatlead serve`` processes on one Redis; opens ``--sessions``
visitor sockets on the first and ``--agents`` agent sockets on the last (the same
process with ``--processes 1``), each agent holding its share of the sessions. Then,
``--rounds`` times, every visitor writes (spread evenly over ``--interval`` seconds)
and its agent answers as soon as it sees the message (an agent socket may send 20
frames a second: past that its replies are refused, counted apart from losses). Latency is from the moment a
side sent to the moment the other side's socket had the frame, on one clock (one
client process).

Example::

    python benchmarks/takeover_latency.py --processes 2 --sessions 200
    python benchmarks/takeover_latency.py --processes 1 --sessions 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _chatlead import start_server  # noqa: E402

DEFAULT_REDIS = "redis://127.0.0.1:6379/13"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Run:
    def __init__(self, sessions: int) -> None:
        self.to_agent: list[float] = []
        self.to_visitor: list[float] = []
        self.sent: dict[str, float] = {}
        self.lost = 0
        self.refused = 0
        self.sessions = sessions


async def _visitor(url: str, run: Run, ready: list[tuple[str, ClientConnection]]) -> None:
    ws = await connect(url + "?site=default", origin="http://127.0.0.1")
    await ws.send(json.dumps({"type": "hello", "site": "default"}))
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "welcome":
            break
    ready.append((frame["session_id"], ws))


async def _read_visitor(ws: ClientConnection, run: Run) -> None:
    async for raw in ws:
        frame = json.loads(raw)
        if frame["type"] == "message" and frame["from"] == "agent":
            started = run.sent.pop(frame["text"], None)
            if started is not None:
                run.to_visitor.append(time.perf_counter() - started)


async def _agent(base: str, token: str, sids: list[str], run: Run) -> ClientConnection:
    ws = await connect(
        base.replace("http", "ws") + "/agent",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=None,
    )
    for sid in sids:
        await ws.send(json.dumps({"type": "join", "session_id": sid}))
    return ws


async def _read_agent(ws: ClientConnection, run: Run) -> None:
    n = 0
    async for raw in ws:
        frame = json.loads(raw)
        if frame["type"] == "error":
            run.refused += 1  # e.g. rate_limited: an agent writing faster than a person
        if frame["type"] != "message" or frame["from"] != "visitor":
            continue
        started = run.sent.pop(frame["text"], None)
        if started is None:
            continue  # a replay at join
        run.to_agent.append(time.perf_counter() - started)
        n += 1
        reply = f"re {frame['text']}"
        run.sent[reply] = time.perf_counter()
        await ws.send(
            json.dumps(
                {"type": "message", "id": f"r{n}", "session_id": frame["session_id"], "text": reply}
            )
        )


async def measure(args: argparse.Namespace, bases: list[str], token: str) -> Run:
    run = Run(args.sessions)
    visitors: list[tuple[str, ClientConnection]] = []
    url = bases[0].replace("http", "ws") + "/ws"
    for start in range(0, args.sessions, 50):
        await asyncio.gather(
            *(_visitor(url, run, visitors) for _ in range(min(50, args.sessions - start)))
        )
    sids = [sid for sid, _ in visitors]
    share = [sids[i :: args.agents] for i in range(args.agents)]
    agents = [await _agent(bases[-1], token, part, run) for part in share]
    readers = [asyncio.create_task(_read_agent(a, run)) for a in agents]
    readers += [asyncio.create_task(_read_visitor(ws, run)) for _, ws in visitors]
    await asyncio.sleep(2)  # joins done, replays read
    step = args.interval / len(visitors)
    for round_ in range(args.rounds):
        began = time.perf_counter()
        for i, (sid, ws) in enumerate(visitors):
            due = began + i * step
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            text = f"v {sid} {round_}"
            run.sent[text] = time.perf_counter()
            await ws.send(json.dumps({"type": "message", "id": f"{sid}-{round_}", "text": text}))
    await asyncio.sleep(3)
    run.lost = len(run.sent) - run.refused
    for task in readers:
        task.cancel()
    for ws in [*agents, *(w for _, w in visitors)]:
        await ws.close()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, choices=(1, 2), default=2)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds per round")
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--port", type=int, default=18610)
    args = parser.parse_args()
    settings = {"msg_rate": "100", "max_conn_per_ip": "100000", "new_sessions_per_ip": "100000/min"}
    servers = [start_server(args.redis, args.port + i, settings) for i in range(args.processes)]
    try:
        bases = [f"http://127.0.0.1:{args.port + i}" for i in range(args.processes)]
        admin = redis.Redis.from_url(args.redis, decode_responses=True).get("chatlead:admin:token")
        made = httpx.post(
            f"{bases[0]}/api/agents",
            json={"id": "bench", "name": "Bench Agent"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        made.raise_for_status()
        run = asyncio.run(measure(args, bases, made.json()["token"]))
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    result: dict[str, Any] = {
        "processes": args.processes,
        "sessions": args.sessions,
        "messages_each_way": len(run.to_agent),
        "lost": run.lost,
        "refused": run.refused,
    }
    for name, values in (("visitor_to_agent", run.to_agent), ("agent_to_visitor", run.to_visitor)):
        if values:
            result[name] = {
                "p50_ms": round(statistics.median(values) * 1000, 1),
                "p99_ms": round(_pct(values, 0.99), 1),
                "max_ms": round(max(values) * 1000, 1),
            }
    print(json.dumps(result, indent=2))
    subprocess.run(["redis-cli", "-u", args.redis, "flushdb"], capture_output=True)


if __name__ == "__main__":
    main()
