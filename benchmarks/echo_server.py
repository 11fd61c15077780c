"""Baseline for ``ws_load.py``: the cheapest server that speaks the ack protocol.

A bare ``websockets`` server that parses every frame with ``json.loads`` and answers
``hello`` with a ``welcome`` and anything else with an ack-shaped frame
``{"type":"ack","id":...,"seq":n}``. It does the same JSON work per frame as
chatlead's endpoint but no validation, flow, logging or Redis, so the ratio
chatlead/echo says what the product costs over the socket and event loop alone.

Runs on uvloop when it is installed (as uvicorn does), with compression off (as
chatlead runs). ``--workers N`` starts N processes on one port (``SO_REUSEPORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal

from websockets.asyncio.server import ServerConnection, serve

__all__ = ["handle", "main"]


async def handle(ws: ServerConnection) -> None:
    seq = 0
    async for raw in ws:
        frame = json.loads(raw)
        if frame.get("type") == "hello":
            await ws.send(json.dumps({"type": "welcome", "session_id": "echo", "seq": 0}))
            continue
        seq += 1
        await ws.send(json.dumps({"type": "ack", "id": frame.get("id"), "seq": seq}))


async def _serve(host: str, port: int, reuse_port: bool) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handle,
        host,
        port,
        compression=None,
        max_size=16384,
        reuse_port=reuse_port,
        ping_interval=None,
    ):
        await stop


def _run(host: str, port: int, reuse_port: bool) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(host, port, reuse_port))
    else:
        uvloop.run(_serve(host, port, reuse_port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.workers <= 1:
        _run(args.host, args.port, reuse_port=False)
        return
    procs = [
        multiprocessing.Process(target=_run, args=(args.host, args.port, True))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()

    def _stop(signum: int, _frame: object) -> None:
        for proc in procs:
            proc.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for proc in procs:
        proc.join()


if __name__ == "__main__":
    main()
