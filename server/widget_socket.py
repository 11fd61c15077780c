"""The ``/ws`` handshake: the origin check and the per-network cap, before a socket is
accepted and handed to its :class:`~server.ws.Connection`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from . import keys, metrics, protocol
from .errors import StoreError
from .limits import client_network
from .protocol import CloseCode, ErrorCode
from .ws import Connection

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["WidgetSocket"]

log = logging.getLogger("chatlead.ws")


class WidgetSocket:
    """The ``/ws`` endpoint as a plain ASGI app (``app.ChatleadApp`` calls it before
    starlette's middleware), so frames skip starlette's wrappers (see
    :class:`Connection`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        runtime: Runtime = ws.app.state.runtime
        origin = ws.headers.get("origin")
        hinted = runtime.sites.get(ws.query_params.get("site", ""))
        allowed = (
            runtime.origin_allowed(hinted, origin, ws)
            if hinted
            else runtime.origin_allowed_anywhere(origin, ws)
        )
        if not allowed:
            # closing before accept() answers the handshake with HTTP 403
            await ws.close(int(CloseCode.POLICY_VIOLATION))
            return
        ip = ws.client.host if ws.client else "-"
        slots = runtime.slots
        socket_id = slots.new_id()
        ip_slot = keys.ip_slots(client_network(ip))
        try:
            admitted = await slots.acquire(ip_slot, socket_id, runtime.settings.max_conn_per_ip)
        except StoreError:
            log.warning("store_unavailable_at_connect")
            await _refuse(ws, ErrorCode.UNAVAILABLE, "try again shortly", CloseCode.SERVICE_RESTART)
            return
        if not admitted:
            busy = "Too many open chats from your network"
            await _refuse(ws, ErrorCode.RATE_LIMITED, busy, CloseCode.TOO_MANY)
            return
        metrics.CONNECTIONS.inc()
        try:
            await ws.accept()
            # Its own task: each wake-up of a coroutine resumes every frame of the
            # await chain above it (uvicorn's protocol, its proxy-headers middleware,
            # the app, this handshake). Cancelling this coroutine cancels the task.
            await asyncio.create_task(Connection(ws, runtime, socket_id, receive, send).run())
        finally:
            metrics.CONNECTIONS.dec()
            slots.release(ip_slot, socket_id)


async def _refuse(ws: WebSocket, code: ErrorCode, message: str, close: CloseCode) -> None:
    """Open the socket only to say why it is closed (a 403 would hide the reason)."""
    with contextlib.suppress(Exception):
        await ws.accept()
        await ws.send_text(protocol.error_frame(code, message))
        await ws.close(int(close))
