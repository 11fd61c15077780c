"""``chatlead`` command line: serve, worker, check, report, deliveries, test-event, admin-url."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import uvloop

from . import logs
from .config import Settings, describe, load_settings, unknown_env
from .errors import ChatleadError, ConfigError, StoreError
from .sites import Site, load_sites
from .targets import check_targets

__all__ = ["main"]

log = logging.getLogger("chatlead")

DESCRIPTION = (
    "Website chat that captures leads and delivers them to your CRM. "
    "Settings come from CHATLEAD_* environment variables; chatlead check shows them."
)
BACKLOG = 2048  # uvicorn's default
STARTUP_FAILURE = 3  # uvicorn's exit code when the app did not start
TEST_EVENT_WAIT_S = 30.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatlead", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="web + websocket + sweeper + delivery")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8000")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies trusted for X-Forwarded-For/-Proto, comma-separated, or * "
        "(default: $FORWARDED_ALLOW_IPS or 127.0.0.1,::1)",
    )
    commands.add_parser("worker", help="delivery worker and sweeper only")
    check = commands.add_parser(
        "check", help="show the settings, validate them and the sites, check Redis, then exit"
    )
    check.add_argument("--config", default=None, help="TOML file (else CHATLEAD_CONFIG)")
    _admin_commands(commands)
    admin_url = commands.add_parser(
        "admin-url", help="print a single-use admin sign-in link (valid 24 h)"
    )
    admin_url.add_argument(
        "--base",
        default=None,
        help="the server's address as your browser reaches it "
        "(default http://127.0.0.1:8000, from CHATLEAD_HOST and CHATLEAD_PORT)",
    )
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
    test_event = commands.add_parser(
        "test-event", help="send a sample lead to a site's CRM and show the first attempt"
    )
    test_event.add_argument("site")
    test_event.add_argument(
        "--wait",
        type=float,
        default=TEST_EVENT_WAIT_S,
        help=f"seconds to wait for the first attempt (default {TEST_EVENT_WAIT_S:g})",
    )


def _check_start(settings: Settings, sites: dict[str, Site]) -> None:
    """Refuse webhook targets every delivery would refuse; log likely mistakes.

    Raises:
        ConfigError: an http or private webhook target (see :func:`check_targets`).
    """
    for name, nearest in unknown_env(os.environ):
        hint = f" did_you_mean={nearest}" if nearest else ""
        log.warning("unknown_setting name=%s%s (ignored)", name, hint)
    for warning in check_targets(settings, sites):
        log.warning("webhook_target %s", warning)


def _no_site(site_id: str, sites: Iterable[str]) -> str:
    return f"no site {site_id!r}; known sites: {', '.join(sorted(sites))}"


@contextlib.contextmanager
def _redis_for(settings: Settings) -> Iterator[Settings]:
    """Settings with a Redis URL: the configured one, or a started embedded server."""
    from .embedded import EmbeddedRedis, socket_url

    if settings.redis_url is not None:
        if settings.redis_url == socket_url(settings.data_dir):  # a running serve's own
            log.info("redis_embedded_running dir=%s", settings.data_dir.resolve())
        else:
            log.info("redis_external url=%s", settings.redis_url)
        yield settings
        return
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


def _listen_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use; "
            "stop the other server or pick another with --port"
        )
    return f"cannot listen on {host} port {port}: {exc.strerror}; check --host and --port"


def _listen(host: str, port: int) -> socket.socket:
    """The server socket, bound and listening, as uvicorn binds it (``Config.bind_socket``).

    Raises:
        ConfigError: the address is in use or cannot be bound (one line, names it).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # listening now, not when uvicorn gets to it: with SO_REUSEADDR two servers
        # could both bind and only the second one's listen() would fail, after start-up
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(_listen_error(host, port, exc)) from None
    sock.set_inheritable(True)  # --workers N: the worker processes serve on it
    return sock


def _base_url(host: str, port: int) -> str:
    """The server's address as a browser on this machine reaches it."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _start_urls(host: str, port: int) -> list[tuple[str, str]]:
    """Where a person opens the demo, the admin and the widget script."""
    base = _base_url(host, port)
    return [
        ("demo", f"{base}/demo"),
        ("admin", f"{base}/admin"),
        ("widget", f"{base}/widget/chatlead.js"),
    ]


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(host=args.host, port=args.port)
    logs.configure(settings.log_format, client_ip=settings.log_client_ip)
    _check_start(settings, load_sites(settings))  # fail before starting anything
    sock = _listen(settings.host, settings.port)  # before the embedded server too
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from .listener import HeadTimeoutProtocol, concurrency_limit, raise_fd_limit

    fd_limit = raise_fd_limit()  # before the embedded server and the workers: they inherit it
    limit = concurrency_limit(fd_limit)
    log.info("fd_limit nofile=%d limit_concurrency=%d", fd_limit, limit)
    port = sock.getsockname()[1]
    for name, value in (("HOST", settings.host), ("PORT", port)):
        os.environ[f"CHATLEAD_{name}"] = str(value)  # what the app (and workers) load
    config = uvicorn.Config(
        f"{__package__}.app:create_app",  # chatlead, or server in a checkout
        factory=True,
        workers=args.workers,
        # a request head (or WebSocket upgrade) must arrive within HEADER_TIMEOUT
        http=functools.partial(HeadTimeoutProtocol, head_timeout=settings.header_timeout),  # type: ignore[arg-type]
        limit_concurrency=limit,
        ws_max_size=settings.max_frame,
        ws_per_message_deflate=False,
        # a client that stops reading (and so never answers pings) is dropped
        ws_ping_interval=20,
        ws_ping_timeout=20,
        lifespan="on",
        log_level="info",
        log_config=None,  # keep our handler: one format, secrets redacted
        access_log=False,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn that into SystemExit
    # so the embedded server below is stopped too instead of being orphaned
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with sock, _redis_for(settings) as ready, _metrics_dir(args.workers):
        _require_redis(ready)
        for name, url in _start_urls(settings.host, port):
            log.info("open %s=%s", name, url)
        if settings.admin_token is None:  # the generated token is never shown: a link is
            from .auth import login_url

            code = asyncio.run(_login_code(ready))
            log.info("open admin_login=%s", login_url(_base_url(settings.host, port), code))
        if args.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
            return 0
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        return 0 if server.started else STARTUP_FAILURE


async def _login_code(settings: Settings) -> str:
    """A new single-use login code, on the Redis of ``settings`` (which has a URL)."""
    from .auth import Credentials
    from .store import connect_redis

    assert settings.redis_url is not None
    client = connect_redis(settings.redis_url)
    try:
        return await Credentials(client, settings.admin_token).new_code()
    finally:
        await client.aclose()


def _admin_url(args: argparse.Namespace) -> int:
    """Print a sign-in link with a new login code (as ``chatlead serve`` does at start)."""
    from .auth import login_url

    settings = load_settings()
    if settings.redis_url is None:
        url = _running_embedded(settings)
        if url is None:
            raise ChatleadError(
                f"no chatlead serve is running on the embedded server in "
                f"{settings.data_dir.resolve()} and CHATLEAD_REDIS_URL is not set"
            )
        settings = settings.model_copy(update={"redis_url": url})
    code = asyncio.run(_login_code(settings))
    print(login_url(args.base or _base_url(settings.host, settings.port), code))
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _work(settings: Settings) -> None:
    from .app import Background, open_store
    from .runtime import Runtime

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
    logs.configure(settings.log_format, client_ip=settings.log_client_ip)
    _check_start(settings, load_sites(settings))
    with _redis_for(settings) as ready:
        _require_redis(ready)
        uvloop.run(_work(ready))  # the same loop uvicorn picks for `serve`
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings(config=args.config)
    sites = load_sites(settings)
    _check_start(settings, sites)
    from .formats.copper import COPPER_BASE

    print("settings:")
    for line in describe(settings):
        print(f"  {line}")
    for site in sites.values():
        default = COPPER_BASE if site.webhook.format == "copper" else "inbox"
        target = site.webhook.url or default
        print(f"site {site.id}: {len(site.flow)} steps, {site.webhook.format} -> {target}")
    ok, line = _check_redis(settings)
    print(line, file=sys.stdout if ok else sys.stderr)
    if ok:
        print("ok")
    return 0 if ok else 1


def _check_redis(settings: Settings) -> tuple[bool, str]:
    """Whether chatlead can run on the configured Redis, and one line saying so."""
    if settings.redis_url is None:
        where = settings.data_dir.resolve()
        return (
            True,
            f"redis: CHATLEAD_REDIS_URL unset; serve and worker use an embedded server in {where}",
        )
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    shown = logs.redact(settings.redis_url)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        server, memory = client.info("server"), client.info("memory")
    except (redis.RedisError, OSError) as exc:
        return False, f"redis: cannot reach {shown}: {logs.redact(str(exc))}"
    finally:
        client.close()
    return _redis_verdict(shown, server, memory)


def _require_redis(settings: Settings) -> None:
    """One line, not the app's start-up traceback, when Redis cannot serve chatlead."""
    ok, line = _check_redis(settings)
    if not ok:
        raise StoreError(line)


def _redis_verdict(shown: str, server: dict[str, Any], memory: dict[str, Any]) -> tuple[bool, str]:
    name = "Valkey" if "valkey_version" in server else "Redis"
    version = f"{name} {server.get('valkey_version') or server.get('redis_version', '?')}"
    policy = memory.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        return False, (
            f"redis: {shown}: {version}, maxmemory-policy {policy}; chatlead needs noeviction "
            "so that sessions and undelivered leads are never evicted"
        )
    return True, f"redis: {shown} reachable, {version}, maxmemory-policy noeviction"


def _running_embedded(settings: Settings) -> str | None:
    """The URL of the embedded server a running ``chatlead serve`` holds, if any."""
    import redis

    from .embedded import EmbeddedRedis

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
    site_id = getattr(args, "site", None)  # report --site, test-event <site>
    if site_id is not None and site_id not in sites:
        raise ChatleadError(_no_site(site_id, sites))
    if settings.redis_url is None and (url := _running_embedded(settings)):
        settings = settings.model_copy(update={"redis_url": url})
    # still no URL: no chatlead serve holds the embedded server, so nothing delivers
    delivering = settings.redis_url is not None
    with _redis_for(settings) as ready:
        return asyncio.run(_admin_command(ready, sites, args, delivering=delivering))


async def _admin_command(
    settings: Settings, sites: dict[str, Site], args: Any, *, delivering: bool
) -> int:
    from .app import open_store
    from .runtime import Runtime

    store = await open_store(settings)
    try:
        runtime = Runtime(settings, sites, store)
        if args.command == "report":
            return await _report(runtime, args)
        if args.command == "test-event":
            wait = args.wait if delivering else 0.0
            return await _test_event(runtime, args.site, wait)
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

    from . import reports
    from .api import Reader

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

    from .api import Reader
    from .reports import DeliveryItem

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
    from .api import replay

    outcome = await replay(runtime, event_id)
    messages = {
        "ok": f"{event_id}: queued for delivery again",
        "pending": f"{event_id}: already waiting for delivery",
        "missing": f"{event_id}: no such event",
    }
    print(messages[outcome], file=sys.stdout if outcome == "ok" else sys.stderr)
    return 0 if outcome == "ok" else 1


async def _test_event(runtime: Any, site_id: str, wait_s: float) -> int:
    """Queue a sample lead and report its first delivery attempt (0: it was delivered)."""
    from .api import Reader, send_test_event

    event_id = await send_test_event(runtime, site_id)
    reader, deadline = Reader(runtime), time.monotonic() + wait_s
    item = await reader.delivery(event_id)
    while item is not None and item.status == "pending" and not item.attempts:
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
        item = await reader.delivery(event_id)
    delivered, line = _first_attempt(item, wait_s)
    print(f"{event_id}: {line}", file=sys.stdout if delivered else sys.stderr)
    return 0 if delivered else 1


def _first_attempt(item: Any, waited_s: float) -> tuple[bool, str]:
    """Whether a test event was delivered, and one line saying how its first attempt went."""
    if item is None:
        return False, "the event is gone (erased or expired)"
    last = item.attempts[-1] if item.attempts else None
    if item.status == "delivered":
        if last is None or last.status_code is None:
            return True, "delivered to the inbox (/admin/inbox)"
        return True, f"delivered: HTTP {last.status_code} in {last.latency_ms or 0:.0f} ms"
    if last is None:
        if not waited_s:
            return (
                False,
                "queued; no chatlead serve is running to deliver it (it will when one starts)",
            )
        return False, (
            f"queued, not attempted within {waited_s:g} s; "
            "is chatlead serve or chatlead worker running on this Redis?"
        )
    why = last.error or f"HTTP {last.status_code}"
    if item.status == "dead":
        return False, f"failed: {why} (dead; fix it, then chatlead deliveries replay {item.id})"
    return False, f"failed: {why}; will retry at {item.next_attempt_at}"


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
        "admin-url": _admin_url,
    }
    try:
        return handlers[args.command](args)
    except ChatleadError as exc:
        print(f"chatlead: {exc}", file=sys.stderr)
        return 2
