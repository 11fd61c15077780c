"""What ``chatlead serve`` guards its listening socket with against slow and many clients.

uvicorn has no timeout for reading a request head: a client that sends half a
request line, or half a WebSocket upgrade, and then nothing holds a connection and
a file descriptor forever (slowloris); a thousand of them exhaust a 1,024-fd limit,
and ``/healthz`` and new widget handshakes fail. :class:`HeadTimeoutProtocol` is
uvicorn's httptools protocol with a deadline for the head: armed when the
connection is made and when each new request of a keep-alive connection begins,
cancelled when the head is complete (for an upgrade too: the WebSocket then runs
its own handshake and ``hello`` timeouts); when it passes, the connection is
closed. A slowly sent request body is not timed here: leave that to a proxy in front.

The file descriptor limit is raised to its hard limit at start
(:func:`raise_fd_limit`), and uvicorn's ``limit_concurrency`` is derived from it
(:func:`concurrency_limit`): past that many open connections, new HTTP requests
get a fast 503 while the fds Redis and deliveries need are still free.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "FD_RESERVE",
    "HEAD_TIMEOUT_S",
    "HeadTimeoutProtocol",
    "concurrency_limit",
    "raise_fd_limit",
]

HEAD_TIMEOUT_S = 10.0
FD_RESERVE = 256
"""Descriptors kept from HTTP requests: the Redis pool (50), the fast Redis pipe,
delivery connections to CRMs, log and metrics files, with room to spare."""
MIN_CONCURRENCY = 64


def concurrency_limit(fd_limit: int) -> int:
    """uvicorn's ``limit_concurrency`` (connections plus WebSockets) for ``fd_limit``."""
    return max(fd_limit - FD_RESERVE, MIN_CONCURRENCY)


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit in effect.

    An unlimited hard limit (macOS) or a refusal leaves the soft limit as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            return soft
        return hard
    return soft


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol that closes a connection whose request head is late.

    Give it to uvicorn as ``Config(http=functools.partial(HeadTimeoutProtocol,
    head_timeout=...))`` (a partial pickles, for ``--workers N``).
    """

    def __init__(self, *args: Any, head_timeout: float = HEAD_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = head_timeout
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # the next request of a keep-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
