"""Client-side CPU cost of one ``EVALSHA`` through redis-py asyncio, several ways.

chatlead makes one script call per visitor event. This measures what that call costs
the *server process* (CPU µs per call, ``time.process_time``), with ``--concurrency``
coroutines calling at once as the WebSocket connections do, for:

* ``script``: ``AsyncScript.__call__`` on ``chatlead.redis_client.connect_redis`` (the path of
  ``Store._call``, and of visitor events before they were coalesced);
* ``evalsha``: ``redis.evalsha(sha, n, *keys, *args)`` on the same client;
* ``batched``: calls issued in the same event-loop tick are sent as one pipeline
  (``transaction=False``) over one connection: one write and one read per batch, as
  ``chatlead.scripts.Coalescer`` does for visitor events.

The script only reads the clock, with the key/argument shape of ``visitor.lua``, so
Redis' own work is negligible and the numbers are the client's::

    python benchmarks/redis_call_bench.py --calls 20000 --concurrency 200
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from chatlead.redis_client import connect_redis

__all__ = ["Batched", "main"]

SCRIPT = "local t = redis.call('TIME') return {'ok', 1, 2, t[1], 0}"
KEYS = [f"bench:{{0}}:s:{'0' * 24}{suffix}" for suffix in ("", ":f", ":t", ":i", ":e")]
KEYS.append("bench:{0}:deadlines")
ARGS = ["0" * 24, "m1", 5, '{"from":"visitor","text":"hello"}', "[]", "{}", "name", "0", 1, "t"]

Call = Callable[[], Awaitable[Any]]


class Batched:
    """Send every ``EVALSHA`` queued during one loop tick as a single pipeline."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []

    async def evalsha(self, *args: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((args, future))
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.execute_command("EVALSHA", *args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # every caller sees the failure
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


async def _measure(name: str, call: Call, calls: int, concurrency: int) -> None:
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    await asyncio.gather(*(call() for _ in range(concurrency)))  # warm up the pool
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_worker * concurrency
    print(
        f"{name:8s} {done:7d} calls  {done / wall:8.0f} calls/s  "
        f"client CPU {cpu / done * 1e6:6.1f} µs/call"
    )


async def run(redis_url: str, calls: int, concurrency: int, variants: list[str]) -> None:
    redis = connect_redis(redis_url)
    script = redis.register_script(SCRIPT)
    sha = await redis.script_load(SCRIPT)
    batched = Batched(redis)
    choices: dict[str, Call] = {
        "script": lambda: script(keys=KEYS, args=ARGS),
        "evalsha": lambda: redis.evalsha(sha, len(KEYS), *KEYS, *ARGS),
        "batched": lambda: batched.evalsha(sha, len(KEYS), *KEYS, *ARGS),
    }
    try:
        for name in variants:
            await _measure(name, choices[name], calls, concurrency)
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--variants", default="script,evalsha,batched")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.redis_url, args.calls, args.concurrency, args.variants.split(",")))
    else:
        uvloop.run(run(args.redis_url, args.calls, args.concurrency, args.variants.split(",")))


if __name__ == "__main__":
    main()
