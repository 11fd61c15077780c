"""REST hooks (CONTRACT §9): targets that Zapier, Make or n8n subscribe through the API.

A hook is a destination that lives in Redis instead of the sites file: one event
type, optionally one site, the ``external-lead`` format signed with the hook's own
``whsec_`` secret. Its destination name is ``hook-<id>``, so its events, queue,
retries and dead letter are a destination's like any other.

Every process keeps a copy of the hooks (:attr:`Hooks.current`) from which the
routes of new events are computed; a change is published on the notification
channel so other processes reload at once, and each reloads every
:data:`REFRESH_S` seconds anyway (a publish can be missed).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import keys
from .sites import EVENT_TYPES, Destination

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "HOOK_PREFIX",
    "MAX_HOOKS",
    "REFRESH_S",
    "Hook",
    "HookCreated",
    "HookItem",
    "HookList",
    "Hooks",
    "hook_id_of",
    "new_hook",
]

HOOK_PREFIX = "hook-"
"""Destination names of hooks start with it (refused in the sites file)."""
MAX_HOOKS = 200
"""Most hooks a server keeps (each one is a destination of every matching event)."""
REFRESH_S = 5.0
"""Longest time a process serves new events with an outdated copy of the hooks."""


@dataclass(frozen=True)
class Hook:
    id: str
    target_url: str
    event: str
    site: str | None
    secret: str
    created_ms: int
    allow_private: bool = False

    @property
    def name(self) -> str:
        return HOOK_PREFIX + self.id

    def destination(self) -> Destination:
        """The destination deliveries send this hook's events to."""
        return Destination(
            name=self.name,
            url=self.target_url,
            secrets=(self.secret,),
            events=(self.event,),
            allow_private=self.allow_private,
        )

    def listed(self) -> HookItem:
        """What ``GET /api/hooks`` shows of it (never the secret)."""
        return HookItem(self.id, self.target_url, self.event, self.site, self.created_ms)


@dataclass(frozen=True)
class HookItem:
    """A REST hook as the API lists it."""

    id: str
    target_url: str
    event: str
    site: str | None
    created: int
    """Milliseconds since the epoch."""


@dataclass(frozen=True)
class HookList:
    """``GET /api/hooks``: every hook, oldest first."""

    items: list[HookItem]


@dataclass(frozen=True)
class HookCreated:
    """``POST /api/hooks``: the new hook's id and the secret its deliveries are signed
    with (shown this once)."""

    id: str
    secret: str


def hook_id_of(destination_name: str) -> str | None:
    """The hook id of a destination name, or ``None`` when it names no hook."""
    if destination_name.startswith(HOOK_PREFIX):
        return destination_name.removeprefix(HOOK_PREFIX)
    return None


def new_hook(target_url: str, event: str, site: str | None, allow_private: bool) -> Hook:
    """A hook with a fresh id and Standard Webhooks secret (pure but for randomness)."""
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown event {event!r}; use {', '.join(EVENT_TYPES)}")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return Hook(
        secrets.token_hex(8),
        target_url,
        event,
        site,
        secret,
        int(time.time() * 1000),
        allow_private,
    )


class Hooks:
    """The hooks in Redis (hash :data:`keys.HOOKS`, id -> JSON) and this process's copy."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.current: tuple[Hook, ...] = ()
        self.loaded_at = 0.0

    async def add(self, hook: Hook) -> None:
        await self.redis.hset(keys.HOOKS, hook.id, json.dumps(asdict(hook)))
        await self._changed()

    async def remove(self, hook_id: str) -> bool:
        removed = bool(await self.redis.hdel(keys.HOOKS, hook_id))
        if removed:
            await self._changed()
        return removed

    async def load(self) -> tuple[Hook, ...]:
        """Every hook, oldest first; this process's copy is replaced with them."""
        raw = await self.redis.hgetall(keys.HOOKS)
        hooks = []
        for value in raw.values():
            try:
                hooks.append(Hook(**json.loads(value)))
            except (TypeError, ValueError):
                continue  # written by a later version; not ours to judge
        self.current = tuple(sorted(hooks, key=lambda h: (h.created_ms, h.id)))
        self.loaded_at = time.monotonic()
        return self.current

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at >= REFRESH_S

    def destination(self, name: str) -> Destination | None:
        """The destination of the hook called ``name`` in this process's copy."""
        hook_id = hook_id_of(name)
        hook = next((h for h in self.current if h.id == hook_id), None)
        return None if hook is None else hook.destination()

    async def _changed(self) -> None:
        await self.load()
        await self.redis.publish(keys.NOTIFY_CHANNEL, json.dumps({"hooks": True}))
