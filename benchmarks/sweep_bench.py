"""Cost of one abandonment sweep pass, against the real store code and a real Redis.

For each configuration ``open:expired`` the database is flushed and seeded through
``Store.create_session`` with ``open`` sessions idle for an hour and ``expired``
sessions idle for one second. Once Redis' clock is past the short deadlines, one
pass is timed: ``Sweeper.sweep_once()`` called until ``result.full`` is False (a shard
with more than a batch of expired sessions needs more than one call). Then idle
passes (nothing expired) are timed.

``--rounds`` re-seeds ``expired`` fresh short-idle sessions for each timed round; the
open ones stay. One more, untimed round counts the Redis commands of a pass exactly:
``MONITOR`` lists every command, including those a Lua script runs (``[db lua]``),
with its database, so other users of a shared Redis (other databases) are left out.
``INFO commandstats`` (server-wide) is still read around each timed pass for the time
Redis spent in the scripts (EVALSHA usec, which includes the script's own commands).

    python benchmarks/sweep_bench.py                      # 99k+1k, 10k+1k, 100k+1k
    python benchmarks/sweep_bench.py --configs 100000:10000 --rounds 2
    python benchmarks/sweep_bench.py --source 7142864     # the store code of a commit
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

if TYPE_CHECKING:
    from server.store import Store

# The server package is imported inside the functions, so that ``--source`` can run
# this file again with another revision of it first on the path; by default it is
# this checkout's ``server/`` folder (last on the path).
sys.path.append(str(Path(__file__).resolve().parent.parent))

__all__ = ["PassResult", "main"]

SHARDS = 16
CHUNK = 500
HOUR_MS = 3_600_000
SECOND_MS = 1_000
ENTRIES = [{"from": "bot", "text": "hi"}]


@dataclass(frozen=True)
class PassResult:
    seconds: float
    calls: int
    flagged: int
    redis_usec: int


def _meta(idle_ms: int) -> dict[str, str]:
    return {
        "site": "default",
        "idle": str(idle_ms),
        "fwd": "with-contact",
        "tok": "x",
        "uid": "u",
        "step": "name",
    }


async def seed(store: Store, count: int, idle_ms: int) -> float:
    """Create ``count`` open sessions, ``CHUNK`` at a time; returns seconds taken."""
    meta = _meta(idle_ms)
    started = time.perf_counter()
    for first in range(0, count, CHUNK):
        size = min(CHUNK, count - first)
        await asyncio.gather(
            *(store.create_session(secrets.token_hex(12), meta, ENTRIES) for _ in range(size))
        )
    return time.perf_counter() - started


async def _due(redis: aioredis.Redis) -> int:
    from server import keys

    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    async with redis.pipeline(transaction=False) as pipe:
        for shard in range(SHARDS):
            pipe.zcount(keys.deadlines(shard), "-inf", now_ms)
        return sum(await pipe.execute())


async def wait_due(redis: aioredis.Redis, expected: int, timeout: float = 10.0) -> None:
    """Poll until ``expected`` deadlines are past on Redis' clock."""
    deadline = time.monotonic() + timeout
    while (due := await _due(redis)) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {due} of {expected} sessions expired")
        await asyncio.sleep(0.05)


async def script_usec(redis: aioredis.Redis) -> int:
    """Microseconds the whole Redis server has spent in scripts (all clients)."""
    stats: dict[str, Any] = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in ("evalsha", "eval"))


async def sweep_pass(store: Store) -> tuple[int, int]:
    """``sweep_once`` until no shard had a full batch; returns (calls, flagged)."""
    from server.sweeper import Sweeper

    sweeper = Sweeper(store)
    calls, flagged = 0, 0
    while True:
        result = await sweeper.sweep_once()
        calls += 1
        flagged += len(result.flagged)
        if not result.full:
            return calls, flagged


async def timed_pass(store: Store) -> PassResult:
    before = await script_usec(store.redis)
    started = time.perf_counter()
    calls, flagged = await sweep_pass(store)
    seconds = time.perf_counter() - started
    return PassResult(seconds, calls, flagged, await script_usec(store.redis) - before)


async def counted_pass(store: Store, redis_url: str) -> Counter[str]:
    """Redis commands (by name) one pass issues in this database, scripts' included."""
    db = int(store.redis.connection_pool.connection_kwargs.get("db", 0))
    mark = f"sweep-bench-{secrets.token_hex(4)}"
    counts: Counter[str] = Counter()
    watcher = aioredis.Redis.from_url(redis_url)
    async with watcher.monitor() as monitor:

        async def read() -> None:
            async for command in monitor.listen():
                if command["db"] != db:
                    continue
                if mark in command["command"]:
                    return
                counts[command["command"].split(" ", 1)[0].lower()] += 1

        reader = asyncio.create_task(read())
        await sweep_pass(store)
        await store.redis.echo(mark)
        await asyncio.wait_for(reader, 60)
    await watcher.aclose()
    return counts


@dataclass(frozen=True)
class ConfigResult:
    open: int
    expired: int
    seed_seconds: float
    passes: list[PassResult]
    idle: list[PassResult]
    commands: Counter[str]
    idle_commands: Counter[str]


async def _expire(store: Store, expired: int) -> float:
    seconds = await seed(store, expired, SECOND_MS)
    await wait_due(store.redis, expected=expired)
    return seconds


async def run_config(
    store: Store, redis_url: str, open_count: int, expired: int, rounds: int
) -> ConfigResult:
    await store.redis.flushdb()
    seed_seconds = await seed(store, open_count, HOUR_MS)
    passes = []
    for _ in range(rounds):
        seed_seconds += await _expire(store, expired)
        result = await timed_pass(store)
        if result.flagged != expired:
            raise RuntimeError(f"flagged {result.flagged}, expected {expired}")
        passes.append(result)
    idle = [await timed_pass(store) for _ in range(20)]
    if any(p.flagged for p in idle):
        raise RuntimeError("an idle pass flagged sessions")
    seed_seconds += await _expire(store, expired)
    commands = await counted_pass(store, redis_url)
    idle_commands = await counted_pass(store, redis_url)
    return ConfigResult(open_count, expired, seed_seconds, passes, idle, commands, idle_commands)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} / {max(values) * 1000:.1f}"


def report(results: list[ConfigResult], rounds: int) -> None:
    import server
    from server.sweeper import BATCH

    print()
    print(
        f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {SHARDS} shards, batch {BATCH}, "
        f"{rounds} round(s) per configuration, code {os.environ.get('SWEEP_BENCH_CODE', '')}"
        f"({os.path.dirname(server.__file__)})"
    )
    print()
    print(
        "| open (not expired) | expired | pass ms (median / max) | sweep_once calls "
        "| Redis cmds per pass | EVALSHA | ZRANGEBYSCORE | ZREM | HMGET | HSET "
        "| Redis script time µs (median) | idle pass ms (median / max) | idle pass cmds |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for config in results:
        cells = [
            f"{config.open:,}",
            f"{config.expired:,}",
            _ms([p.seconds for p in config.passes]),
            str(max(p.calls for p in config.passes)),
            f"{sum(config.commands.values()):,}",
            *(f"{config.commands[c]:,}" for c in ("evalsha", "zrangebyscore", "zrem", "hmget")),
            f"{config.commands['hset']:,}",
            f"{statistics.median(p.redis_usec for p in config.passes):,.0f}",
            _ms([p.seconds for p in config.idle]),
            f"{sum(config.idle_commands.values()):,}",
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    for config in results:
        for title, counts in (("pass", config.commands), ("idle pass", config.idle_commands)):
            detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            print(f"{config.open:,}+{config.expired:,} {title}: {detail}")
        print(f"  seeded in {config.seed_seconds:.1f} s")


async def main_async(args: argparse.Namespace) -> None:
    from server.store import Store, connect_redis

    store = Store(connect_redis(args.redis_url), shards=SHARDS, retention_s=86400)
    results = []
    try:
        for config in args.configs.split(","):
            open_count, expired = (int(part) for part in config.split(":"))
            result = await run_config(store, args.redis_url, open_count, expired, args.rounds)
            best = min(result.passes, key=lambda p: p.seconds)
            print(
                f"open {open_count:>7,} expired {expired:>6,}: pass {best.seconds * 1000:.1f} ms "
                f"(best of {args.rounds}), {sum(result.commands.values()):,} commands",
                flush=True,
            )
            results.append(result)
        await store.redis.flushdb()
    finally:
        await store.redis.aclose()
    report(results, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="flushed")
    parser.add_argument(
        "--configs",
        default="99000:1000,10000:1000,100000:1000",
        help="comma list of open:expired session counts",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per configuration")
    parser.add_argument("--source", default=None, help="git revision of the server package")
    args = parser.parse_args()
    if args.source:
        from ws_load import source_tree

        env = {**os.environ, "PYTHONPATH": source_tree(args.source)}
        env["SWEEP_BENCH_CODE"] = args.source + " "
        argv = [a for a in sys.argv[1:] if a not in ("--source", args.source)]
        sys.exit(subprocess.run([sys.executable, __file__, *argv], env=env).returncode)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
