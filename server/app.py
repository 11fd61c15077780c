"""The ASGI application: routes plus the background loops of one process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logs, metrics
from .config import Settings, load_settings
from .delivery import Deliverer, Outgoing
from .durability import Durability
from .errors import ConfigError
from .loops import Loop, forever
from .recovery import reminder_plans
from .redis_client import REPLY_TIMEOUT_S, connect_redis, connect_sentinel
from .resp import Pipe
from .runtime import Runtime
from .site_config import load_sites
from .sites import Site
from .store import Store
from .sweeper import Sweeper
from .widget_socket import WidgetSocket

__all__ = ["Background", "ChatleadApp", "create_app", "open_store"]

log = logging.getLogger("chatlead.app")

PR_SET_PDEATHSIG = 1
"""``prctl`` option: a signal for this process when its parent exits (linux/prctl.h)."""
STOP_TIMEOUT_S = 25.0
"""Longest shutdown wait for the background loops (delivery drains for up to 20 s)."""
NOSNIFF = (b"x-content-type-options", b"nosniff")
FORM_BODY_MAX = 16 * 1024
"""Largest request body with a form content type (the admin's forms)."""
BODY_MAX = 1 << 20
"""Largest request body of any other type (JSON)."""
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


async def open_store(settings: Settings) -> Store:
    """Connect (to Sentinel's master when ``REDIS_SENTINEL`` is set) and check Redis
    (eviction policy, shard count, ``DURABILITY``)."""
    # a confirmed write waits up to DURABILITY_TIMEOUT for its answer: past the usual
    # reply timeouts by that much (a WAIT that times out answers, it does not hang)
    waits = settings.durability_timeout if settings.durability != Durability.MEMORY else 0.0
    client: aioredis.Redis | RedisCluster
    if settings.redis_sentinel:
        client, sentinel = connect_sentinel(settings.redis_sentinel, settings.redis_master, waits)
        master = settings.redis_master

        async def resolve() -> tuple[str, int]:
            host, port = await sentinel.discover_master(master)
            return str(host), int(port)

        # REDIS_URL, if given, supplies the credentials and database
        fast = Pipe(
            settings.redis_url or "redis://sentinel/0", REPLY_TIMEOUT_S + waits, resolve=resolve
        )
    else:
        if settings.redis_url is None:
            raise ConfigError("CHATLEAD_REDIS_URL is not set (the CLI starts the embedded server)")
        client = connect_redis(settings.redis_url, extra_timeout=waits)
        fast = Pipe(settings.redis_url, timeout=REPLY_TIMEOUT_S + waits)
    store = Store(
        client,
        settings.shards,
        settings.retention,
        msg_rate=settings.msg_rate,
        msg_burst=settings.msg_burst,
        fast=None if isinstance(client, RedisCluster) else fast,
        durability=settings.durability,
        durability_timeout=settings.durability_timeout,
    )
    await store.check()
    return store


class Background:
    """The loops a process runs besides answering requests."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        outgoing = Outgoing(settings.link_base, settings.smtp_url, settings.smtp_from)
        self.deliverer = Deliverer(
            runtime.store,
            runtime.sites,
            settings.retry_schedule,
            runtime.delivery_wakeup,
            outgoing,
            runtime.hooks,
            runtime.links,
        )
        self.sweeper = Sweeper(
            runtime.store,
            runtime.delivery_wakeup,
            lambda: runtime.routes,
            reminder_plans(runtime.sites),
        )
        self.runtime = runtime
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loops: list[Loop] = [
            self.deliverer.run,
            self.sweeper.run,
            self.runtime.slots.run,
            self.runtime.listen_notifications,
            self.runtime.live.listen,
            self.runtime.live.work,
        ]
        self.tasks = [
            asyncio.create_task(forever(loop, self.stopping), name=loop.__qualname__)
            for loop in loops
        ]

    async def stop(self) -> None:
        """Tell the loops to stop; in-flight deliveries get their drain time.

        A loop still running after ``STOP_TIMEOUT_S`` is cancelled and logged.
        """
        self.stopping.set()
        self.runtime.delivery_wakeup.set()
        _, running = await asyncio.wait(self.tasks, timeout=STOP_TIMEOUT_S)
        for task in running:
            log.warning("background_loop_stuck_at_shutdown task=%s", task.get_name())
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=1)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if not await runtime.store.ping():
        return PlainTextResponse("redis unreachable", status_code=503)
    problem = await runtime.store.durability_problem()
    if problem is not None:  # acks would answer `unavailable` (§14)
        return PlainTextResponse(problem, status_code=503)
    return PlainTextResponse("ok")


def _routes() -> list[BaseRoute]:
    from . import resume_routes, unsubscribe_routes, widget
    from .admin import routes_api, routes_live, routes_metrics, routes_pages
    from .agent_socket import agent_socket

    return [
        WebSocketRoute("/agent", agent_socket),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *routes_api.routes,
        *routes_pages.routes,
        *routes_live.routes,
        *widget.routes,
        *resume_routes.routes,
        *unsubscribe_routes.routes,
        *routes_metrics.routes,
    ]


class ChatleadApp(Starlette):
    """Starlette, with ``/ws`` taken before the middleware stack.

    Every frame a widget socket sends would otherwise pass starlette's exception
    middleware, which wraps ``send`` for the whole life of the socket; the widget
    socket handles its own errors (:class:`server.widget_socket.WidgetSocket`).

    Every HTTP response, errors included (this wraps starlette's error middleware
    too), says ``X-Content-Type-Options: nosniff``, and every request body is capped
    while it is read (:func:`body_cap`): 413 past it.
    """

    widget_socket = WidgetSocket()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _route_path(scope) == "/ws":
            scope["app"] = self
            await self.widget_socket(scope, receive, send)
            return
        if scope["type"] == "http":
            await _capped(super().__call__, scope, receive, _nosniff(send))
            return
        await super().__call__(scope, receive, send)


def body_cap(headers: list[tuple[bytes, bytes]]) -> tuple[int, int | None]:
    """The body cap of a request and its declared ``Content-Length`` (None: not given).

    A malformed length counts as over any cap.
    """
    content_type, length = b"", None
    for name, value in headers:
        if name == b"content-type":
            content_type = value.lower()
        elif name == b"content-length":
            length = int(value) if value.isdigit() else BODY_MAX + 1
    cap = FORM_BODY_MAX if content_type.startswith(FORM_TYPES) else BODY_MAX
    return cap, length


async def _capped(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` on a request whose body is within its cap, else answer 413.

    A declared ``Content-Length`` over the cap is refused before a byte is read; a
    body without one (chunked) is read up to the cap before the app sees the
    request, so no endpoint -- authentication and CSRF checks included -- ever
    holds more than the cap.
    """
    cap, length = body_cap(scope["headers"])
    if length is not None:
        if length > cap:
            await _too_large(scope, send, cap)
            return
        await app(scope, receive, send)  # the server stops at the declared length
        return
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > cap:
            await _too_large(scope, send, cap)
            return
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()  # http.disconnect, for streamed answers
        replayed = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    await app(scope, replay, send)


async def _too_large(scope: Scope, send: Send, cap: int) -> None:
    message = f"request body over {cap // 1024} KiB"
    if _route_path(scope).startswith("/api/"):
        response: Response = JSONResponse(
            {"error": "payload_too_large", "message": message}, status_code=413
        )
    else:
        response = PlainTextResponse(message + "\n", status_code=413)
    # no "Connection: close": a client still sending would see a reset instead of the
    # 413; the server discards the rest of the body without keeping it
    await response(scope, _never_receive, send)


async def _never_receive() -> Message:
    return {"type": "http.disconnect"}


def _nosniff(send: Send) -> Send:
    """``send`` with ``nosniff`` added to the response start (once, if not already set)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            if all(name != NOSNIFF[0] for name, _ in headers):  # starlette sends lowercase
                message = {**message, "headers": [*headers, NOSNIFF]}
        await send(message)

    return sending


def _route_path(scope: Scope) -> str:
    """The path below ``root_path`` (servers differ on whether ``path`` includes it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _exit_with_supervisor() -> None:
    """Get SIGTERM (a graceful stop) when the process that started us dies.

    A killed ``serve --workers N`` parent would otherwise leave its workers running:
    still holding the port, sweeping and delivering with the old settings. Linux only
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere workers outlive a killed parent.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def create_app(
    settings: Settings | None = None, sites: dict[str, Site] | None = None
) -> ChatleadApp:
    """The application; settings from the environment unless given."""
    settings = settings or load_settings()
    sites = sites or load_sites(settings)
    if multiprocessing.parent_process() is not None:  # a worker of serve --workers N
        _exit_with_supervisor()
        metrics.forget_dead_workers()
    if not logging.getLogger().handlers:  # a worker process started by uvicorn
        logs.configure(settings.log_format, client_ip=settings.log_client_ip)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        store = await open_store(settings)
        runtime = Runtime(settings, sites, store)
        app.state.runtime = runtime
        background = Background(runtime)
        await runtime.refresh_hooks()
        background.start()
        log.info("ready sites=%s shards=%d", ",".join(sites), settings.shards)
        # Start-up objects live for the whole process: keep them out of every
        # collection, and collect the young generation less often (each visitor
        # frame allocates a few hundred short-lived objects).
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        try:
            yield {}
        finally:
            await background.stop()
            await store.aclose()

    app = ChatleadApp(routes=_routes(), lifespan=lifespan)
    app.state.default_site_id = next(iter(sites))
    return app
