"""Seed Redis with abandoned (and completed) sessions for the report benchmarks.

Writes them with :func:`chatlead.admin.seed.seed` (the keys, fields and counters
the session scripts write), spread over the last ``--days`` days:

    python benchmarks/seed_abandoned.py --redis-url redis://127.0.0.1:6379/14 \\
        --abandoned 100000 --completed 50000 --sites acme,globex

With ``--measure URL`` it then times, against a running server on that data, the
full CSV export and the first JSON page of ``/api/reports/abandoned`` (``--runs``
times each, reporting the median and the best; ``--token`` for the admin token).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatlead.admin.seed import Seeded, seed  # noqa: E402

__all__ = ["Seeded", "seed"]


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy() -> float:
    """CPU seconds the whole machine has spent busy (``/proc/stat``)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


def measure(
    url: str, token: str | None, runs: int, client: redis.Redis, server_pid: int | None
) -> dict[str, Any]:
    """Time the full CSV export and the first JSON page, ``runs`` times each.

    Per CSV run: wall time, CPU of the server (``server_pid``), of Redis (its main
    thread: all its clients) and of this client, and the other load on the machine
    in cores (busy time not used by those three, over the run).
    """
    import statistics

    import httpx

    headers = {"authorization": f"Bearer {token}"} if token else {}
    csv_runs: list[dict[str, float]] = []
    page_times: list[float] = []
    rows = 0
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for _ in range(runs):
            server0 = _cpu_of(server_pid) if server_pid else 0.0
            redis0, mine0, busy0 = _redis_cpu(client), time.process_time(), _busy()
            started = time.perf_counter()
            with http.stream("GET", "/api/reports/abandoned", params={"format": "csv"}) as answer:
                answer.raise_for_status()
                rows = sum(chunk.count(b"\n") for chunk in answer.iter_bytes()) - 1
            wall = time.perf_counter() - started
            server = _cpu_of(server_pid) - server0 if server_pid else 0.0
            used = server + (_redis_cpu(client) - redis0) + (time.process_time() - mine0)
            csv_runs.append(
                {
                    "wall_s": round(wall, 3),
                    "server_cpu_s": round(server, 2),
                    "redis_cpu_s": round(_redis_cpu(client) - redis0, 2),
                    "other_load_cores": round(max(0.0, (_busy() - busy0 - used) / wall), 2),
                }
            )
            started = time.perf_counter()
            http.get("/api/reports/abandoned").raise_for_status()
            page_times.append(time.perf_counter() - started)
    walls = [run["wall_s"] for run in csv_runs]
    return {
        "csv_rows": rows,
        "csv_s_median": round(statistics.median(walls), 3),
        "csv_s_best": round(min(walls), 3),
        "first_page_ms_median": round(statistics.median(page_times) * 1000, 1),
        "first_page_ms_best": round(min(page_times) * 1000, 1),
        "csv_runs": csv_runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--abandoned", type=int, default=100_000)
    parser.add_argument("--completed", type=int, default=50_000)
    parser.add_argument("--sites", default="default", help="comma-separated site ids")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--flush", action="store_true", help="FLUSHDB first")
    parser.add_argument("--no-seed", action="store_true", help="only --measure")
    parser.add_argument("--measure", metavar="URL", help="time the report on a running server")
    parser.add_argument("--token", default=None, help="admin token for --measure")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server-pid", type=int, default=None, help="for server CPU")
    args = parser.parse_args()
    if not args.no_seed:
        _seed_from(args)
    if args.measure:
        client = redis.Redis.from_url(args.redis_url, decode_responses=True)
        print(json.dumps(measure(args.measure, args.token, args.runs, client, args.server_pid)))


def _seed_from(args: argparse.Namespace) -> None:
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    if args.flush:
        client.flushdb()
    result = seed(
        client,
        abandoned=args.abandoned,
        completed=args.completed,
        sites=args.sites.split(","),
        days=args.days,
        shards=args.shards,
    )
    print(
        f"seeded {result.abandoned} abandoned + {result.completed} completed sessions, "
        f"{result.events} lead.abandoned events in {result.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
