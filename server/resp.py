"""One pipelined Redis connection for the visitor hot path.

Every visitor frame is one ``EVALSHA`` (docs/ARCHITECTURE.md). The calls of one event-loop
tick are written to this connection as a single packet and their replies, which
Redis sends in order, are matched back in order; hiredis parses them. Compared with a
redis-py pipeline per tick, this skips the pool checkout, command encoding, retry
and timeout wrappers of every call: the visitor step is most of a message's CPU, and
redis-py was a quarter of it (docs/BENCHMARKS.md).

Behind Sentinel the address comes from a resolver asked at every (re)connection, and
a ``READONLY`` reply (the server was demoted in a failover) drops the connection so
the next batch goes to the new master.

Only what that path needs: ``redis://``, ``rediss://`` and ``unix://`` URLs with a
user, password and database, and a ``rediss://`` URL's TLS options exactly as
redis-py reads them (``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_check_hostname``), so both paths trust the same servers.
Everything else (and Redis Cluster) goes through redis-py.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import hiredis
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Pipe", "pack", "pack_script_call", "tls_context"]

Arg = str | bytes | int | float
SESSIONS_CACHED = 1024
"""Sessions whose script call heads (keys and fixed arguments) are kept packed."""


def _bulk(arg: Arg) -> bytes:
    data = arg if isinstance(arg, bytes) else str(arg).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(*args: Arg) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


# The sessions chatting right now, not every session of the day: each entry is ~0.6 KiB,
# and a long run with thousands of new sessions an hour must not grow by them (a miss
# costs a few µs of packing).
@functools.lru_cache(maxsize=SESSIONS_CACHED)
def _script_head(sha: str, keys: tuple[str, ...], fixed: tuple[Arg, ...]) -> bytes:
    words = ("EVALSHA", sha, len(keys), *keys, *fixed)
    return b"*%d\r\n" % (len(words) + 1) + b"".join(map(_bulk, words))


def pack_script_call(sha: str, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """``EVALSHA`` of a script; all but the last argument are packed once per session.

    A session's keys and fixed arguments repeat on every one of its events; only the
    last argument (the event) changes.
    """
    return _script_head(sha, tuple(keys), tuple(args[:-1])) + _bulk(args[-1])


def _reply(item: Any) -> Any:
    """hiredis returns error replies as values; give them redis-py's types."""
    if isinstance(item, hiredis.ReplyError):
        text = str(item)
        return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
    return item


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_context(params: dict[str, Any]) -> ssl.SSLContext | None:
    """The TLS context redis-py would use for a parsed URL (None: not ``rediss://``).

    Defaults as redis-py's: certificates required, checked against the system's
    CAs (or ``ssl_ca_certs``), host name checked unless ``ssl_check_hostname=false``
    or certificates are not required.
    """
    if params.get("connection_class") is not SSLConnection:
        return None
    reqs = params.get("ssl_cert_reqs", "required")
    mode = _CERT_REQS[reqs.lower()] if isinstance(reqs, str) else reqs
    context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    context.check_hostname = bool(params.get("ssl_check_hostname", True)) and (
        mode == ssl.CERT_REQUIRED
    )
    context.verify_mode = mode
    if params.get("ssl_certfile"):
        context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    return context


class _Protocol(asyncio.Protocol):
    """Feeds replies to the oldest waiting batch."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.demoted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            item = self.reader.gets()
            if item is False:
                if self.demoted:
                    self.transport.close()  # type: ignore[union-attr]
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.transport.close()  # type: ignore[union-attr]
                return
            count, replies, future = waiting[0]
            reply = _reply(item)
            if isinstance(reply, ResponseError) and str(reply).startswith("READONLY"):
                # a replica now (failover): answer this batch, then let go of it
                self.demoted = True
            replies.append(reply)
            if len(replies) == count:
                waiting.popleft()
                if not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self.waiting:
            _, _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, packet: bytes, count: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append((count, [], future))
        self.transport.write(packet)  # type: ignore[union-attr]
        return future


def _overdue(conn: _Protocol, future: asyncio.Future[list[Any]]) -> None:
    """A batch went unanswered: fail it, and drop the connection (and what it carries)."""
    if not future.done():
        future.set_exception(RedisTimeoutError("Redis did not answer in time"))
        conn.transport.close()  # type: ignore[union-attr]


class Pipe:
    """Commands sent together, replies in order, on one lazily opened connection.

    A lost connection fails every batch in flight with ``ConnectionError`` (the
    caller sends no ack); the next batch connects again. A batch unanswered after
    ``timeout`` closes the connection, failing the batches behind it too.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        connect_timeout: float = 3.0,
        resolve: Callable[[], Awaitable[tuple[str, int]]] | None = None,
    ) -> None:
        """Args:
        resolve: where the server is now (Sentinel's master), asked before each
            connection; ``url`` then gives only the credentials, database and TLS.
        """
        self.params: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self.resolve = resolve
        self.tls = tls_context(self.params)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._conn: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, commands: Sequence[bytes]) -> list[Any]:
        """Send packed commands (:func:`pack`) at once; one reply or error each.

        Raises:
            redis.exceptions.ConnectionError: Redis could not be reached, or went away
                before answering (a command may or may not have run).
            redis.exceptions.TimeoutError: no answer within ``timeout``.
        """
        await self._connected()
        future = self.submit(commands)
        assert future is not None
        return await future

    def submit(self, commands: Sequence[bytes]) -> asyncio.Future[list[Any]] | None:
        """Write packed commands now, without awaiting; None when not connected.

        The future gets the replies (one reply or error each) or the error of the
        whole batch, as :meth:`execute` raises it.
        """
        conn = self._conn
        if conn is None or conn.lost.done():
            return None
        future = conn.send(b"".join(commands), len(commands))
        timer = asyncio.get_running_loop().call_later(self.timeout, _overdue, conn, future)
        future.add_done_callback(lambda _: timer.cancel())
        return future

    async def _connected(self) -> _Protocol:
        conn = self._conn
        if conn is not None and not conn.lost.done():
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None or self._conn.lost.done():
                self._conn = await self._open()
            return self._conn

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        p = self.params
        try:
            if self.resolve is not None:
                host, port = await asyncio.wait_for(self.resolve(), self.connect_timeout)
                p = {**p, "host": host, "port": port}
                p.pop("path", None)
            if "path" in p:
                opening = loop.create_unix_connection(_Protocol, p["path"])
            else:
                opening = loop.create_connection(_Protocol, p["host"], p["port"], ssl=self.tls)
            transport, conn = await asyncio.wait_for(opening, self.connect_timeout)
            # uvloop may call connection_made only after create_connection returned
            conn.connection_made(transport)
        except (OSError, TimeoutError, RedisConnectionError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        setup = []
        if p.get("password"):
            auth = (
                ("AUTH", p["username"], p["password"])
                if p.get("username")
                else ("AUTH", p["password"])
            )
            setup.append(pack(*auth))
        if p.get("db"):
            setup.append(pack("SELECT", p["db"]))
        if setup:
            replies = await asyncio.wait_for(conn.send(b"".join(setup), len(setup)), self.timeout)
            for reply in replies:
                if isinstance(reply, Exception):
                    conn.transport.close()  # type: ignore[union-attr]
                    raise RedisConnectionError(f"Redis refused the connection setup: {reply}")
        return conn

    def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
