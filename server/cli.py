"""``chatlead`` command line: serve, worker, check, report, deliveries, test-event, admin-url,
agents, resume-keys."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import logging
import os
import resource
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import uvloop

from . import logs
from .cli_admin import add_admin_commands, admin, admin_url, at_master, base_url, login_code
from .config import Settings, describe, load_settings, unknown_env
from .durability import refusal
from .embedded import redis_for
from .errors import ChatleadError, ConfigError, StoreError
from .site_config import check_outgoing, load_sites
from .sites import Site
from .targets import check_targets

__all__ = ["main"]

log = logging.getLogger("chatlead")

DESCRIPTION = (
    "Website chat that captures leads and delivers them to your CRM. "
    "Settings come from CHATLEAD_* environment variables; chatlead check shows them."
)
BACKLOG = 2048  # uvicorn's default
STARTUP_FAILURE = 3  # uvicorn's exit code when the app did not start


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
    add_admin_commands(commands)
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


def _check_start(settings: Settings, sites: dict[str, Site], *, worker: bool = False) -> None:
    """Refuse webhook targets every delivery would refuse and missing mail or link
    settings; log likely mistakes.

    Raises:
        ConfigError: an http or private webhook target (see :func:`check_targets`), or
            a setting an email or alert destination needs (:func:`check_outgoing`).
    """
    check_outgoing(settings, sites, worker=worker)
    for name, nearest in unknown_env(os.environ):
        hint = f" did_you_mean={nearest}" if nearest else ""
        log.warning("unknown_setting name=%s%s (ignored)", name, hint)
    for warning in check_targets(settings, sites):
        log.warning("webhook_target %s", warning)


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


def _start_urls(host: str, port: int) -> list[tuple[str, str]]:
    """Where a person opens the demo, the admin and the widget script."""
    base = base_url(host, port)
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

    from .lean_websocket import LeanWebSocketProtocol
    from .listener import HeadTimeoutProtocol, concurrency_limit, raise_fd_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd_limit = raise_fd_limit()  # before the embedded server and the workers: they inherit it
    limit = concurrency_limit(fd_limit)
    log.info(
        "fd_limit nofile=%d soft_was=%d hard=%d limit_concurrency=%d",
        fd_limit,
        soft,
        hard,
        limit,
    )
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
        ws=LeanWebSocketProtocol,  # less kept per idle socket
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
    with sock, redis_for(settings) as ready, _metrics_dir(args.workers):
        ready = _require_redis(ready)
        for name, url in _start_urls(settings.host, port):
            log.info("open %s=%s", name, url)
        if settings.admin_token is None:  # the generated token is never shown: a link is
            from .admin.auth import login_url

            code = asyncio.run(login_code(ready))
            log.info("open admin_login=%s", login_url(base_url(settings.host, port), code))
        if args.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
            return 0
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        return 0 if server.started else STARTUP_FAILURE


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _work(settings: Settings) -> None:
    from .app import Background, open_store
    from .runtime import Runtime

    store = await open_store(settings)
    runtime = Runtime(settings, load_sites(settings), store)
    background = Background(runtime)
    await runtime.refresh_hooks()
    background.start()
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
    _check_start(settings, load_sites(settings), worker=True)
    with redis_for(settings) as ready:
        _require_redis(ready)
        uvloop.run(_work(ready))  # the same loop uvicorn picks for `serve`
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings(config=args.config)
    sites = load_sites(settings)
    _check_start(settings, sites)
    from . import formats

    print("settings:")
    for line in describe(settings):
        print(f"  {line}")
    for site in sites.values():
        print(f"site {site.id}: {len(site.flow)} steps")
        for destination in site.destinations:
            target = formats.get(destination.format).target_of(destination)
            to = getattr(destination.options, "to", None)
            where = _origin_of(target) if target else ", ".join(to or ())
            shown = "inbox" if destination.is_inbox else where
            events = ",".join(destination.events)
            print(f"  destination {destination.name}: {destination.format} -> {shown} ({events})")
    ok, line = _check_redis(settings)
    print(line, file=sys.stdout if ok else sys.stderr)
    if ok:
        print("ok")
    return 0 if ok else 1


def _origin_of(url: str) -> str:
    """A URL shown without its path, query or credentials (they may hold a token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{port}{rest}"


def _check_redis(settings: Settings) -> tuple[bool, str]:
    """Whether chatlead can run on the configured Redis, and one line saying so."""
    if settings.redis_sentinel:
        try:
            settings = at_master(settings)
        except StoreError as exc:
            return False, f"redis: {exc}"
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
        persistence, cluster = {}, False
        if settings.durability != "memory":
            persistence = client.info("persistence")
            cluster = str(client.info("cluster").get("cluster_enabled")) == "1"
    except (redis.RedisError, OSError) as exc:
        return False, f"redis: cannot reach {shown}: {logs.redact(str(exc))}"
    finally:
        client.close()
    refused = refusal(settings.durability, server, persistence, cluster=cluster)
    if refused is not None:
        return False, f"redis: {shown}: {refused}"
    return _redis_verdict(shown, server, memory)


def _require_redis(settings: Settings) -> Settings:
    """One line, not the app's start-up traceback, when Redis cannot serve chatlead.

    Returns the settings with a Redis URL (Sentinel's master now, when configured).
    """
    ok, line = _check_redis(settings)
    if not ok:
        raise StoreError(line)
    # the app asks Sentinel itself; this URL is for one-off uses at start
    return at_master(settings) if settings.redis_sentinel else settings


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


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    args = _parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "worker": _worker,
        "check": _check,
        "report": admin,
        "deliveries": admin,
        "test-event": admin,
        "agents": admin,
        "resume-keys": admin,
        "admin-url": admin_url,
    }
    try:
        return handlers[args.command](args)
    except ChatleadError as exc:
        print(f"chatlead: {exc}", file=sys.stderr)
        return 2
