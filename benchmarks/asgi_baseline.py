"""Intermediate baselines for ``ws_load.py``: chatlead's stack without chatlead.

Between the bare ``websockets`` echo and chatlead, two steps that split the cost:

* ``asgi``: the same uvicorn + starlette WebSocket stack chatlead runs on (uvloop,
  compression off), answering each frame with an ack after ``json.loads``;
* ``asgi-redis``: the same, plus one ``EVALSHA`` per frame through chatlead's own
  Redis client (``chatlead.redis_client.connect_redis``, the blocking pool) with the key and
  argument shape of the visitor script, but a script that only reads the clock;
* ``asgi-redis-batched``: the same calls, but those issued during one event-loop
  tick go out as one pipeline (``redis_call_bench.Batched``): what coalescing the
  per-event script calls would save.

chatlead minus ``asgi-redis`` is then the product's own work (protocol parsing, flow,
JSON building, the Lua script's Redis commands, the per-connection writer task).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["create_app", "main"]

SCRIPT = "local t = redis.call('TIME') return {'ok', 1, 2, t[1], 0}"
KEYS = [f"bench:{{0}}:s:{'0' * 24}{suffix}" for suffix in ("", ":f", ":t", ":i", ":e")]
KEYS.append("bench:{0}:deadlines")


def _script_call(redis_url: str, batched: bool) -> Any:
    from chatlead.redis_client import connect_redis

    redis = connect_redis(redis_url)
    script = redis.register_script(SCRIPT)
    if not batched:
        return script
    from redis_call_bench import Batched

    batch = Batched(redis)

    async def call(keys: list[str], args: list[Any]) -> Any:
        # the script is loaded by the first plain call (EVALSHA has no fallback here)
        if not call.loaded:  # type: ignore[attr-defined]
            await script(keys=keys, args=args)
            call.loaded = True  # type: ignore[attr-defined]
        return await batch.evalsha(script.sha, len(keys), *keys, *args)

    call.loaded = False  # type: ignore[attr-defined]
    return call


def create_app() -> Starlette:
    redis_url = os.environ.get("BENCH_REDIS_URL")
    batched = os.environ.get("BENCH_REDIS_BATCHED") == "1"
    script = _script_call(redis_url, batched) if redis_url else None

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        seq = 0
        try:
            while True:
                frame = json.loads(await ws.receive_text())
                if frame.get("type") == "hello":
                    await ws.send_text(json.dumps({"type": "welcome", "seq": 0}))
                    continue
                if script is not None:
                    entry = json.dumps({"from": "visitor", "text": frame.get("text")})
                    args = ["0" * 24, frame["id"], seq, entry, "[]", "{}", "name", "0", 1, "t"]
                    await script(keys=KEYS, args=args)
                seq += 1
                await ws.send_text(json.dumps({"type": "ack", "id": frame["id"], "seq": seq}))
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", default=None, help="do one EVALSHA per frame")
    parser.add_argument("--batched", action="store_true", help="coalesce EVALSHAs per tick")
    args = parser.parse_args()
    if args.redis_url:
        os.environ["BENCH_REDIS_URL"] = args.redis_url
    if args.batched:
        os.environ["BENCH_REDIS_BATCHED"] = "1"
    uvicorn.run(
        "asgi_baseline:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
    )


if __name__ == "__main__":
    main()
