"""``chatlead`` command line: serve, worker, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvloop

from server import logs
from server.config import Settings, load_settings, load_sites
from server.errors import ChatleadError

__all__ = ["main"]

log = logging.getLogger("chatlead")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatlead", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="web + websocket + sweeper + delivery")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8000")
    serve.add_argument("--workers", type=int, default=1)
    commands.add_parser("worker", help="delivery worker and sweeper only")
    check = commands.add_parser("check", help="validate settings and site config, then exit")
    check.add_argument("--config", default=None, help="TOML file (else CHATLEAD_CONFIG)")
    return parser


@contextlib.contextmanager
def _redis_for(settings: Settings) -> Iterator[Settings]:
    """Settings with a Redis URL: the configured one, or a started embedded server."""
    if settings.redis_url is not None:
        log.info("redis_external url=%s", settings.redis_url)
        yield settings
        return
    from server.embedded import EmbeddedRedis

    embedded = EmbeddedRedis(settings.data_dir)
    url = embedded.start()
    # worker processes (--workers N) inherit the URL and never start their own server
    os.environ["CHATLEAD_REDIS_URL"] = url
    try:
        yield settings.model_copy(update={"redis_url": url})
    finally:
        embedded.stop()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings(host=args.host, port=args.port)
    logs.configure(settings.log_format)
    load_sites(settings)  # fail before starting anything
    for name, value in (("HOST", settings.host), ("PORT", settings.port)):
        os.environ[f"CHATLEAD_{name}"] = str(value)
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn that into SystemExit
    # so the embedded server below is stopped too instead of being orphaned
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with _redis_for(settings):
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers if args.workers > 1 else None,
            ws_max_size=settings.max_frame,
            ws_per_message_deflate=False,
            lifespan="on",
            log_level="info",
            log_config=None,  # keep our handler: one format, secrets redacted
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _work(settings: Settings) -> None:
    from server.app import Background, open_store
    from server.runtime import Runtime

    store = await open_store(settings)
    runtime = Runtime(settings, load_sites(settings), store)
    background = Background(runtime)
    background.start(notifications=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker ready")
    await stop.wait()
    await background.deliverer.drain()
    await background.stop()
    await store.redis.aclose()


def _worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    logs.configure(settings.log_format)
    load_sites(settings)
    with _redis_for(settings) as ready:
        uvloop.run(_work(ready))  # the same loop uvicorn picks for `serve`
    return 0


def _check(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"config": args.config}
    settings = load_settings(**overrides)
    sites = load_sites(settings)
    from server.formats.copper import COPPER_BASE

    for site in sites.values():
        default = COPPER_BASE if site.webhook.format == "copper" else "inbox"
        target = site.webhook.url or default
        print(f"site {site.id}: {len(site.flow)} steps, {site.webhook.format} -> {target}")
    print("ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    args = _parser().parse_args(argv)
    handlers = {"serve": _serve, "worker": _worker, "check": _check}
    try:
        return handlers[args.command](args)
    except ChatleadError as exc:
        print(f"chatlead: {exc}", file=sys.stderr)
        return 2
