"""uvicorn's sans-I/O WebSocket protocol, lighter per idle socket.

A widget socket is idle nearly all its life, so what each one keeps is what one process
can hold (docs/BENCHMARKS.md, "Idle connections"). uvicorn's protocol keeps, for the
socket's whole life, the handshake's parsed request and response (their header maps)
and an ``asyncio.Queue`` and ``asyncio.Event`` (several deques each) where one waiter at
a time ever waits. :class:`LeanWebSocketProtocol` drops the handshake once it is
answered and uses a one-consumer inbox and a flag instead: about 6 KiB less per socket,
with the same behaviour (reading stays paused until the app takes each message, as
uvicorn does, so the inbox never holds more than a message and a disconnect).

Give it to uvicorn as ``Config(ws=LeanWebSocketProtocol)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["LeanWebSocketProtocol"]


class _Inbox:
    """What ``asyncio.Queue`` is to uvicorn here, for one consumer (the app's
    ``receive``): ``put_nowait``, ``get``, ``empty``."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """What ``asyncio.Event`` is to uvicorn here (is the transport writable):
    ``set``, ``clear``, ``wait``; the waiters' list exists only while one waits."""

    __slots__ = ("_on", "_waiters")

    def __init__(self) -> None:
        self._on = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def set(self) -> None:
        self._on = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._on = False

    def is_set(self) -> bool:
        return self._on

    async def wait(self) -> bool:
        if not self._on:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol keeping less per socket (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # answered: the handshake's request and response are not read again
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
