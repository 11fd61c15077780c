"""What one server process shares between its connections and loops."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from . import keys
from .booking import Bookings
from .config import Settings
from .hooks import Hooks
from .limits import ConnectionSlots, LeadRate, NewSessions
from .live import Live
from .redis_client import Translated
from .resume_keys import ResumeLinks
from .routing import Routes
from .sites import Site
from .store import Store
from .takeover import Takeover

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["Hub", "Runtime"]

log = logging.getLogger("chatlead.runtime")

NOTIFY_POLL_S = 0.5
"""Longest wait for a notification before the listener looks at its stop signal."""


class Notifiable(Protocol):
    def notify_abandoned(self) -> None: ...
    def notify_live(self) -> None: ...
    def notify_typing(self) -> None: ...


class Hub:
    """Live connections of this process by session id."""

    def __init__(self) -> None:
        self._by_session: dict[str, set[Notifiable]] = defaultdict(set)

    def join(self, session_id: str, conn: Notifiable) -> None:
        self._by_session[session_id].add(conn)

    def leave(self, session_id: str, conn: Notifiable) -> None:
        conns = self._by_session.get(session_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_session[session_id]

    def abandoned(self, session_ids: list[str]) -> None:
        for session_id in session_ids:
            for conn in list(self._by_session.get(session_id, ())):
                conn.notify_abandoned()

    def live(self, session_id: str) -> None:
        """An agent changed the session (joined, wrote, left): its sockets catch up."""
        for conn in list(self._by_session.get(session_id, ())):
            conn.notify_live()

    def typing(self, session_id: str) -> None:
        for conn in list(self._by_session.get(session_id, ())):
            conn.notify_typing()

    def __len__(self) -> int:
        return sum(len(conns) for conns in self._by_session.values())


def _own_origin(conn: HTTPConnection) -> str | None:
    host = conn.headers.get("host")
    if not host:
        return None
    scheme = "https" if conn.url.scheme in ("wss", "https") else "http"
    return f"{scheme}://{host}"


@dataclass
class Runtime:
    settings: Settings
    sites: dict[str, Site]
    store: Store
    hub: Hub = field(default_factory=Hub)
    delivery_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    slots: ConnectionSlots = field(init=False)
    new_sessions: NewSessions = field(init=False)
    lead_rate: LeadRate = field(init=False)
    bookings: Bookings = field(init=False)
    routes: Routes = field(init=False)
    hooks: Hooks = field(init=False)
    takeover: Takeover = field(init=False)
    live: Live = field(init=False)
    links: ResumeLinks = field(init=False)

    def __post_init__(self) -> None:
        self.routes = Routes(self.sites)
        self.hooks = Hooks(self.store.redis)
        self.slots = ConnectionSlots(self.store)
        self.new_sessions = NewSessions(self.store, self.settings.new_sessions_per_ip)
        self.lead_rate = LeadRate(self.store)
        self.bookings = Bookings(self.store)
        self.takeover = Takeover(self.store)
        self.links = ResumeLinks(
            self.store.redis,
            self.settings.recovery_ttl,
            self.settings.link_base,
            self.store.shards,
            self.store.retention_ms,
        )
        self.live = Live(
            self.store, self.takeover, self.sites, lambda: self.routes, self.delivery_wakeup
        )

    async def notify(self, notice: dict[str, object]) -> None:
        """Tell every process (this one included) through the notification channel."""
        with Translated("publishing a notification"):
            await self.store.redis.publish(keys.NOTIFY_CHANNEL, json.dumps(notice))

    def site_cap(self, site: Site) -> int:
        """Open sockets allowed for ``site`` across all processes."""
        return site.max_connections or self.settings.max_conn_per_site

    def origin_allowed(self, site: Site, origin: str | None, conn: HTTPConnection) -> bool:
        """The site's allowed origins, plus our own origin (for ``/demo``)."""
        if site.origin_allowed(origin):
            return True
        own = _own_origin(conn)
        return (
            origin is not None
            and own is not None
            and origin.rstrip("/")
            in (
                own,
                own.replace("http://", "https://"),
            )
        )

    def origin_allowed_anywhere(self, origin: str | None, conn: HTTPConnection) -> bool:
        return any(self.origin_allowed(site, origin, conn) for site in self.sites.values())

    async def refresh_hooks(self) -> None:
        """Route new events with the REST hooks as they are in Redis now."""
        self.routes = Routes(self.sites, await self.hooks.load())

    async def listen_notifications(self, stop: asyncio.Event) -> None:
        """Tell live sockets when another process's sweeper abandons their session or
        an agent changes it, close a deleted agent's sockets, and reload the REST hooks
        when they change (and every ``hooks.REFRESH_S`` anyway)."""
        pubsub = self.store.redis.pubsub()
        try:
            await pubsub.subscribe(keys.NOTIFY_CHANNEL)
            while not stop.is_set():
                if self.hooks.stale():
                    await self.refresh_hooks()
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=NOTIFY_POLL_S
                )
                if message is None or message.get("type") != "message":
                    continue
                try:
                    notice = json.loads(message["data"])
                    ids = notice.get("abandoned", [])
                except (ValueError, AttributeError):
                    continue
                await self._notice(notice, ids)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _notice(self, notice: dict[str, object], abandoned: list[str]) -> None:
        if notice.get("hooks"):
            await self.refresh_hooks()
        if notice.get("resume_keys"):  # rotated (§11): read them before the next check
            self.links.forget()
        self.hub.abandoned(abandoned)
        for session_id in abandoned:
            self.live.changed(session_id)
        live, typing, removed = (
            notice.get("live"),
            notice.get("typing"),
            notice.get("agent_removed"),
        )
        if isinstance(live, str):
            self.hub.live(live)
        if isinstance(typing, str):
            self.hub.typing(typing)
        if isinstance(removed, str):
            self.live.revoke(removed)
