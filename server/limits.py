"""Connection caps and the new-session rate, shared by every server process.

Both count per client network: one IPv4 address, or one IPv6 /64 (a single
subscriber's allocation, where every address is the same client).

Each open socket holds a lease in a Redis sorted set (socket id -> lease expiry on
Redis' clock). ``slot.lua`` drops lapsed leases and takes a slot only while the set
is under the cap, in one atomic step, so N processes on N hosts never admit more
than the cap between them (close 4429, docs/PROTOCOL.md). A process renews its leases
three times per lease; one that dies (SIGKILL, a lost host) stops renewing, and its
slots free themselves within ``LEASE_MS``.

Every key is one hash slot of its own, touched by one-key commands only, so this
runs unchanged on Redis Cluster (docs/ARCHITECTURE.md, Redis layout).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import secrets
from collections import defaultdict

from . import keys
from .loops import rest
from .redis_client import REDIS_ERRORS, Translated
from .scripts import Coalescer
from .spam import IP_WINDOW_MS
from .store import Store
from .units import Rate

__all__ = ["LEASE_MS", "ConnectionSlots", "LeadRate", "NewSessions", "client_network"]

log = logging.getLogger("chatlead.limits")

LEASE_MS = 60_000
"""A lease is renewed three times per lease (a missed renewal is not a lost slot)."""


def client_network(ip: str) -> str:
    """What caps count as one client: the IPv4 address, or the IPv6 /64 (``2001:db8::/64``)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class NewSessions:
    """How many new sessions one client network may start: a token bucket in Redis."""

    def __init__(self, store: Store, rate: Rate) -> None:
        self.rate = rate
        self._take = Coalescer(store.redis, store.script("session_rate"))

    async def admit(self, ip: str) -> bool:
        """Take a token for a new session from ``ip``'s network; False when it has none.

        Raises:
            StoreError: Redis is unreachable (the caller refuses the session).
        """
        key = keys.new_sessions(client_network(ip))
        with Translated("in the new-session rate"):
            taken = await self._take.call([key], [self.rate.events, int(self.rate.per_s * 1000)])
        return bool(taken == 1)


class LeadRate:
    """How many leads one client network completed on a site in the last hour."""

    def __init__(self, store: Store) -> None:
        self._count = Coalescer(store.redis, store.script("lead_rate"))

    async def completed(self, site: str, ip: str, session_id: str) -> int:
        """Count ``session_id`` as a lead of ``ip``'s network; the hour's leads.

        Raises:
            StoreError: Redis is unreachable (the event is not stored either).
        """
        key = keys.network_leads(site, client_network(ip))
        with Translated("in the lead rate"):
            count = await self._count.call([key], [IP_WINDOW_MS, session_id])
        return int(count)


def _log_failed_release(done: asyncio.Future[object]) -> None:
    if done.exception() is not None:  # the lease lapses on its own within LEASE_MS
        log.warning("slot_release_failed error=%s", done.exception())


class ConnectionSlots:
    """The slots this process holds, taken, renewed and given back in Redis."""

    def __init__(self, store: Store, lease_ms: int = LEASE_MS) -> None:
        self.store = store
        self.lease_ms = lease_ms
        # the takes and give-backs of one tick share a pipeline
        self._take = Coalescer(store.redis, store.script("slot"))
        self._give_back = Coalescer(store.redis, store.script("unslot"))
        self._held: dict[str, set[str]] = defaultdict(set)
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        """A socket id unique across processes (a random process part + a counter)."""
        return f"{self._prefix}:{next(self._ids)}"

    async def acquire(self, key: str, socket_id: str, cap: int) -> bool:
        """Take a slot of ``key`` for ``socket_id``; False when ``cap`` are taken.

        Raises:
            StoreError: Redis is unreachable (the caller refuses the socket).
        """
        with Translated("taking a connection slot"):
            taken = await self._take.call([key], [socket_id, cap, self.lease_ms])
        if taken == 1:
            self._held[key].add(socket_id)
            return True
        return False

    def release(self, key: str, socket_id: str) -> None:
        """Give a slot back; never waits."""
        held = self._held.get(key)
        if held is None or socket_id not in held:
            return
        held.discard(socket_id)
        if not held:
            del self._held[key]
        self._give_back.call([key], [socket_id]).add_done_callback(_log_failed_release)

    async def renew_once(self) -> None:
        """Push the expiry of every held lease one ``lease_ms`` ahead.

        ``XX`` never re-adds a lease that was released meanwhile (a release racing
        this pipeline must win).
        """
        if not self._held:
            return
        expiry = await self.store.now_ms() + self.lease_ms
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for key, ids in list(self._held.items()):
                pipe.zadd(key, dict.fromkeys(ids, expiry), xx=True)
                pipe.pexpire(key, self.lease_ms)
            await pipe.execute()

    async def run(self, stop: asyncio.Event) -> None:
        """Renew until ``stop`` is set; a failed round is retried at the next one."""
        while not await rest(stop, self.lease_ms / 3000):
            try:
                await self.renew_once()
            except REDIS_ERRORS as exc:
                log.warning("slot_renew_failed error=%s", exc)
