"""``chatlead`` command line: serve, worker, check, report, deliveries, test-event."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvloop

from server import logs
from server.config import Settings, Site, load_settings, load_sites
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
    _admin_commands(commands)
    return parser


def _admin_commands(commands: Any) -> None:
    """The CLI side of the admin API: reports, the delivery log, test events."""
    report = commands.add_parser("report", help="reports (as GET /api/reports/...)")
    kinds = report.add_subparsers(dest="report", required=True)
    abandoned = kinds.add_parser("abandoned", help="abandoned leads with totals and drop-off")
    abandoned.add_argument("--since", default=None, help="ISO date/time or 24h, 7d (default 30d)")
    abandoned.add_argument("--until", default=None, help="ISO date/time or relative (default now)")
    abandoned.add_argument("--site", default=None, help="one site (default all)")
    abandoned.add_argument("--format", choices=("table", "csv", "json"), default="table")
    abandoned.add_argument("--limit", type=int, default=None, help="rows (table: default 50)")
    deliveries = commands.add_parser("deliveries", help="the delivery log")
    actions = deliveries.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument("--status", choices=("pending", "delivered", "dead"), default=None)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    replay = actions.add_parser("replay", help="deliver a delivered or dead event again")
    replay.add_argument("id", help="event id (evt_...)")
    test_event = commands.add_parser("test-event", help="send a sample lead to a site's CRM")
    test_event.add_argument("site")


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


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, each writes its metrics where any of them can sum them."""
    if workers <= 1 or "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="chatlead-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


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
    with _redis_for(settings), _metrics_dir(args.workers):
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers if args.workers > 1 else None,
            ws_max_size=settings.max_frame,
            ws_per_message_deflate=False,
            # a client that stops reading (and so never answers pings) is dropped
            ws_ping_interval=20,
            ws_ping_timeout=20,
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
    await store.aclose()


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


def _running_embedded(settings: Settings) -> str | None:
    """The URL of the embedded server a running ``chatlead serve`` holds, if any."""
    import redis

    from server.embedded import EmbeddedRedis

    embedded = EmbeddedRedis(settings.data_dir)
    if not embedded.socket.exists():
        return None
    client = redis.Redis(unix_socket_path=str(embedded.socket), socket_timeout=2)
    try:
        return embedded.url if client.ping() else None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _admin(args: argparse.Namespace) -> int:
    settings = load_settings()
    sites = load_sites(settings)
    if settings.redis_url is None and (url := _running_embedded(settings)):
        settings = settings.model_copy(update={"redis_url": url})
    with _redis_for(settings) as ready:
        return asyncio.run(_admin_command(ready, sites, args))


async def _admin_command(settings: Settings, sites: dict[str, Site], args: Any) -> int:
    from server.app import open_store
    from server.runtime import Runtime

    store = await open_store(settings)
    try:
        runtime = Runtime(settings, sites, store)
        if args.command == "report":
            return await _report(runtime, args)
        if args.command == "test-event":
            return await _test_event(runtime, args.site)
        if args.action == "replay":
            return await _replay(runtime, args.id)
        return await _deliveries(runtime, args)
    finally:
        await store.aclose()


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


async def _report(runtime: Any, args: Any) -> int:
    from pydantic import TypeAdapter

    from server import reports
    from server.api import Reader

    reader = Reader(runtime)
    sites = reader.sites(args.site)
    period = reports.parse_period(args.since, args.until, await reader.now_ms())
    if args.format == "table":
        return await _report_table(reader, sites, period, args.limit or 50)
    out = sys.stdout
    rows = _at_most(reader.abandoned_chunks(sites, period), args.limit)
    if args.format == "csv":
        out.write(next(reports.csv_lines(())))
        async for chunk in rows:
            out.write("".join(reports.csv_lines([chunk], header=False)))
        return 0
    summary = TypeAdapter(reports.Summary).dump_json(await reader.summary(sites, period))
    since, until = reports.iso_ms(period.since_ms), reports.iso_ms(period.until_ms)
    out.write(f'{{"site": {json.dumps(args.site)}, "since": "{since}", "until": "{until}", ')
    out.write(f'"summary": {summary.decode()}, "items": [')
    row_json, separator = TypeAdapter(reports.AbandonedRow), ""
    async for chunk in rows:
        for values in chunk:
            row = reports.AbandonedRow(*values)
            out.write(separator + row_json.dump_json(row).decode())
            separator = ","
    out.write("]}\n")
    return 0


async def _at_most(chunks: AsyncIterator[list[Any]], limit: int | None) -> AsyncIterator[list[Any]]:
    left = limit
    async for chunk in chunks:
        if left is not None:
            chunk, left = chunk[:left], left - len(chunk[:left])
        if chunk:
            yield chunk
        if left == 0:
            return


async def _report_table(reader: Any, sites: list[Site], period: Any, limit: int) -> int:
    s = await reader.summary(sites, period)
    print(
        f"{s.first_day} .. {s.last_day}: {s.started} started, {s.completed} completed, "
        f"{s.abandoned} abandoned ({s.abandonment_rate:.1%}), {s.recovered} recovered"
    )
    print("drop-off (stopped/reached): " + ", ".join(
        f"{d.step} {d.stopped}/{d.reached}" for d in s.drop_off
    ) + "\n")  # fmt: skip
    rows, _ = await reader.abandoned_page(sites, period, None, max(1, min(limit, 1000)))
    headers = ["abandoned_at", "site", "step", "name", "email", "phone", "delivery", "session"]
    cells = [
        [r.abandoned_at[:16], r.site, r.step, r.name or "", r.email or "", r.phone or "",
         r.delivery, r.session_id]
        for r in rows
    ]  # fmt: skip
    print(_table(headers, cells))
    return 0


async def _deliveries(runtime: Any, args: Any) -> int:
    from pydantic import TypeAdapter

    from server.api import Reader
    from server.reports import DeliveryItem

    items, _ = await Reader(runtime).deliveries(args.status, None, max(1, min(args.limit, 1000)))
    if args.format == "json":
        sys.stdout.write(TypeAdapter(list[DeliveryItem]).dump_json(items).decode() + "\n")
        return 0
    cells = [
        [d.created_at[:19], d.status, d.event, d.site, str(len(d.attempts)),
         (d.attempts[-1].error or str(d.attempts[-1].status_code or "ok")) if d.attempts else "",
         d.id]
        for d in items
    ]  # fmt: skip
    headers = ["created_at", "status", "event", "site", "tries", "last", "id"]
    sys.stdout.write(_table(headers, cells) + "\n")
    return 0


async def _replay(runtime: Any, event_id: str) -> int:
    from server.api import replay

    outcome = await replay(runtime, event_id)
    messages = {
        "ok": f"{event_id}: queued for delivery again",
        "pending": f"{event_id}: already waiting for delivery",
        "missing": f"{event_id}: no such event",
    }
    print(messages[outcome], file=sys.stdout if outcome == "ok" else sys.stderr)
    return 0 if outcome == "ok" else 1


async def _test_event(runtime: Any, site_id: str) -> int:
    from server.api import send_test_event

    if site_id not in runtime.sites:
        print(f"chatlead: no site {site_id!r} (sites: {', '.join(runtime.sites)})", file=sys.stderr)
        return 2
    event_id = await send_test_event(runtime, site_id)
    print(f"{event_id}: queued (a running server or worker delivers it)")
    return 0


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    args = _parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "worker": _worker,
        "check": _check,
        "report": _admin,
        "deliveries": _admin,
        "test-event": _admin,
    }
    try:
        return handlers[args.command](args)
    except ChatleadError as exc:
        print(f"chatlead: {exc}", file=sys.stderr)
        return 2
