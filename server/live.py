"""What the agent sockets of one process share (CONTRACT §10): the session changes
they must hear of, from every process, and the ``visitor.waiting`` timers.

Every script that changes a session publishes its id on its shard's watch channel
(:func:`keys.watch_channel`, a sharded channel: ``SPUBLISH``). This process subscribes
only while one of its agents is connected (a process with no
agent pays nothing per visitor message), queues the ids it hears, and a single worker
reads each changed session once — from the lowest seq a joined agent here has not
seen, else only its last entry — and hands it to every agent socket. A nudge only
says "look again": whoever missed one (a reconnect, a lost subscription) catches up
from the stored transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from . import keys, metrics
from .errors import StoreError
from .redis_client import REDIS_ERRORS
from .session import SessionRecord, SessionStatus
from .sites import Site

if TYPE_CHECKING:
    from .routing import Routes
    from .store import Store
    from .takeover import Takeover

__all__ = ["AgentListener", "Live"]

log = logging.getLogger("chatlead.live")

POLL_S = 0.5
RETRY_S = 1.0


class AgentListener(Protocol):
    """An agent socket, as :class:`Live` sees it."""

    agent_id: str

    def watches(self, site_id: str) -> bool: ...
    def seen_seq(self, session_id: str) -> int | None: ...
    def joined_sessions(self) -> list[str]: ...
    def changed(self, record: SessionRecord, now_ms: int, read_at: float) -> None: ...
    def revoked(self) -> None: ...


class Live:
    """The agent sockets of this process and the session changes they are told of."""

    def __init__(
        self,
        store: Store,
        takeover: Takeover,
        sites: dict[str, Site],
        routes: Callable[[], Routes],
        wakeup: asyncio.Event,
    ) -> None:
        self.store = store
        self.takeover = takeover
        self.sites = sites
        self.routes = routes
        self.delivery_wakeup = wakeup
        self.sockets: set[AgentListener] = set()
        self.subscribed = asyncio.Event()
        self._someone = asyncio.Event()
        self._dirty: dict[str, None] = {}
        self._work = asyncio.Event()
        self._timers: dict[str, tuple[int, asyncio.TimerHandle]] = {}

    # --- sockets --------------------------------------------------------------

    def add(self, sock: AgentListener) -> None:
        self.sockets.add(sock)
        self._someone.set()

    def remove(self, sock: AgentListener) -> None:
        self.sockets.discard(sock)
        if not self.sockets:
            self._someone.clear()

    def revoke(self, agent_id: str) -> None:
        """An agent was deleted (on any process): close its sockets here."""
        for sock in list(self.sockets):
            if sock.agent_id == agent_id:
                sock.revoked()

    def changed(self, session_id: str) -> None:
        """Read this session again for the agent sockets (soon, once per burst)."""
        if self.sockets:
            self._dirty[session_id] = None
            self._work.set()

    async def ready(self) -> None:
        """Wait until changes from every process are being heard."""
        await self.subscribed.wait()

    # --- the loops (server.app.Background) ------------------------------------

    async def listen(self, stop: asyncio.Event) -> None:
        """Subscribe to the watch channel while an agent is connected here."""
        while not stop.is_set():
            if not self.sockets:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._someone.wait(), POLL_S)
                continue
            try:
                await self._subscribed(stop)
            except (*REDIS_ERRORS, StoreError) as exc:
                log.warning("watch_channel_lost error=%s", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
            finally:
                self.subscribed.clear()

    async def _subscribed(self, stop: asyncio.Event) -> None:
        pubsub = self.store.redis.pubsub()
        cluster = self.store.cluster is not None
        try:
            await pubsub.ssubscribe(*(keys.watch_channel(n) for n in range(self.store.shards)))
            self.subscribed.set()
            for sock in list(self.sockets):  # what was missed while not subscribed
                for session_id in sock.joined_sessions():
                    self.changed(session_id)
            while self.sockets and not stop.is_set():
                if cluster:  # one connection per node that serves a shard's channel
                    message = await pubsub.get_sharded_message(  # type: ignore[attr-defined, unused-ignore]
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                else:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                if message is not None and message.get("type") == "smessage":
                    self.changed(str(message["data"]))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def work(self, stop: asyncio.Event) -> None:
        """Read each changed session once and tell every agent socket."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), POLL_S)
            self._work.clear()
            while self._dirty:
                # every session changed so far, read at once (one pipeline: Store.read)
                batch = list(self._dirty)
                self._dirty.clear()
                results = await asyncio.gather(
                    *(self._tell(sid) for sid in batch), return_exceptions=True
                )
                errors = [r for r in results if isinstance(r, BaseException)]
                for error in errors:
                    if not isinstance(error, StoreError):
                        raise error
                if errors:
                    log.warning("live_read_failed sessions=%d error=%s", len(errors), errors[0])
                    failed = [sid for sid, r in zip(batch, results, strict=True) if r is not None]
                    self._dirty.update(dict.fromkeys(failed))
                    await asyncio.sleep(RETRY_S)

    async def _tell(self, session_id: str) -> None:
        seen = [s for sock in self.sockets if (s := sock.seen_seq(session_id)) is not None]
        read_at = time.monotonic()
        record = await self.store.load_session(session_id, min(seen) if seen else -1)
        if record is None:
            return
        now_ms = int(time.time() * 1000)
        for sock in list(self.sockets):
            sock.changed(record, now_ms, read_at)
        self._time_wait(record, now_ms)

    # --- visitor.waiting ------------------------------------------------------

    def _time_wait(self, record: SessionRecord, now_ms: int) -> None:
        """Arm the ``visitor.waiting`` check of a waiting visitor, while an agent of its
        site watches here (and one of its destinations takes the event)."""
        since = record.wait_from_ms
        site = self.sites.get(record.site)
        armed = self._timers.get(record.id)
        if armed is not None and armed[0] == since:
            return
        if armed is not None:
            armed[1].cancel()
            del self._timers[record.id]
        if (
            since is None
            or site is None
            or record.status is not SessionStatus.OPEN
            or record.holder(now_ms)
            or not any(sock.watches(site.id) for sock in self.sockets)
            or not self.routes().to(site.id, "visitor.waiting")
        ):
            return
        delay = max(0.0, (since - now_ms) / 1000 + site.agent_wait)
        handle = asyncio.get_running_loop().call_later(
            delay, lambda: asyncio.ensure_future(self._waited(record.id, site))
        )
        self._timers[record.id] = (since, handle)

    async def _waited(self, session_id: str, site: Site) -> None:
        self._timers.pop(session_id, None)
        routes = self.routes().to(site.id, "visitor.waiting")
        try:
            if await self.takeover.waiting(session_id, site.agent_wait, routes):
                metrics.SESSIONS.labels("waiting").inc()
                self.delivery_wakeup.set()
                log.info("visitor_waiting session=%s site=%s", session_id, site.id)
        except StoreError as exc:
            log.warning("visitor_waiting_failed session=%s error=%s", session_id, exc)
