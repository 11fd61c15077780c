"""The durable outbox: lead events waiting for delivery, and their attempt log.

Events are written by the session scripts (same atomic step as the state change).
This module claims, settles, lists and replays them. Event ids are built and parsed
in :mod:`chatlead.keys`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import keys
from .redis_client import Translated
from .scripts import run_each
from .session import SessionRecord
from .store import HASH, Store

__all__ = [
    "UNDATED",
    "Claim",
    "EventRecord",
    "Outbox",
    "decode_entry",
    "entry_ms",
]

# Longer than one attempt can take (15 s request timeout), so a live worker keeps
# its claim; a killed worker's events are due again this long after the claim.
LEASE_MS = 20_000
INBOX_TESTS_KEEP = 100
"""Test events the inbox keeps (real leads are kept for the retention)."""
PRUNE_PER_PUSH = 100


@dataclass(frozen=True)
class Claim:
    event_id: str
    token: str


@dataclass(frozen=True)
class EventRecord:
    id: str
    type: str
    session_id: str
    site: str
    status: str
    created_ms: int
    attempts: list[dict[str, Any]]


def _record(event_id: str, raw: dict[str, str], attempts: list[str]) -> EventRecord:
    return EventRecord(
        id=event_id,
        type=raw["type"],
        session_id=raw["session"],
        site=raw["site"],
        status=raw["status"],
        created_ms=int(raw["created"]),
        attempts=[json.loads(a) for a in attempts],
    )


UNDATED = 2**62
"""The time of an inbox entry with no date at all: newer than any (never pruned)."""


def decode_entry(raw: str | bytes) -> dict[str, Any] | None:
    """One inbox list entry, or None when it is not a payload with an event id."""
    try:
        item = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    return item


def entry_ms(item: Mapping[str, Any]) -> int:
    """When an inbox entry was delivered (ms): its ``at``, else its last message's time.

    Entries written before ``at`` existed fall back on the transcript; one with
    neither counts as brand new (it is never pruned by mistake).
    """
    at = item.get("at")
    if isinstance(at, int):
        return at
    data = item.get("data")
    transcript = data.get("transcript") if isinstance(data, dict) else None
    if isinstance(transcript, list) and transcript and isinstance(transcript[-1], dict):
        stamp = transcript[-1].get("createdTime")
        if isinstance(stamp, str):
            try:
                return int(datetime.fromisoformat(stamp).timestamp() * 1000)
            except ValueError:
                pass
    return UNDATED


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis

    async def claim(self, limit: int = 32) -> list[Claim]:
        """Claim due events in every shard (one round trip)."""
        calls = [
            ([keys.outbox_due(shard)], [limit, LEASE_MS, keys.tag(shard)])
            for shard in range(self.store.shards)
        ]
        with Translated("claiming events"):
            results = await run_each(self.redis, self.store.script("claim"), calls)
        return [Claim(flat[i], flat[i + 1]) for flat in results for i in range(0, len(flat), 2)]

    async def load_with_session(
        self, event_id: str
    ) -> tuple[EventRecord | None, SessionRecord | None]:
        """The event and its session in one atomic read (same shard)."""
        session_id = keys.event_session(event_id)
        shard = self.store.shard(session_id)
        raw, attempts, *session = await self.store.read(
            [
                (keys.event(shard, event_id), HASH),
                (keys.event_attempts(shard, event_id), 0),
                *self.store.session_reads(session_id),
            ]
        )
        if not raw:
            return None, None
        return _record(event_id, raw, attempts), self.store.session_from(session_id, session)

    async def settle(
        self,
        claim: Claim,
        outcome: str,
        attempt: dict[str, Any],
        *,
        delay_s: float = 0,
        ref_id: str | None = None,
    ) -> str:
        """Record an attempt: ``outcome`` is delivered | retry | dead | defer."""
        event_id = claim.event_id
        session_id = keys.event_session(event_id)
        suffix = keys.event_suffix(event_id)
        shard = self.store.shard(session_id)
        with Translated(f"settling {event_id}"):
            return str(
                await self.store.settle_calls.call(
                    [
                        keys.outbox_due(shard),
                        keys.event(shard, event_id),
                        keys.event_attempts(shard, event_id),
                        keys.session(shard, session_id),
                        keys.session_events(shard, session_id, suffix),
                    ],
                    args=[
                        event_id,
                        claim.token,
                        outcome,
                        json.dumps(attempt),
                        int(delay_s * 1000),
                        ref_id or "",
                        self.store.retention_ms,
                        keys.ref_field(suffix),
                        keys.tag(shard),
                    ],
                )
            )

    async def replay(self, event_id: str) -> str:
        """Queue a delivered or dead event again: ok | pending | missing (a dead one
        stops counting as its destination's dead letter)."""
        session_id = keys.event_session(event_id)
        shard = self.store.shard(session_id)
        return str(
            await self.store.script("replay")(
                keys=[
                    keys.outbox_due(shard),
                    keys.event(shard, event_id),
                    keys.session_events(shard, session_id, keys.event_suffix(event_id)),
                ],
                args=[event_id, self.store.retention_ms, keys.tag(shard)],
            )
        )

    async def add_test_event(self, site: str, suffixes: Sequence[str] = ("",)) -> list[str]:
        """``lead.test`` events for ``site``, one per destination (its event id suffix),
        delivered like any other; their ids."""
        session_id = secrets.token_hex(12)
        shard = self.store.shard(session_id)
        now = await self.store.now_ms()
        ids = [keys.test_event(session_id) + suffix for suffix in suffixes]
        async with self.redis.pipeline(transaction=True) as pipe:
            for event_id in ids:
                self._queue_test(pipe, shard, event_id, session_id, site, now)
            await pipe.execute()
        return ids

    def _queue_test(
        self, pipe: Any, shard: int, event_id: str, session_id: str, site: str, now: int
    ) -> None:
        pipe.hset(
            keys.event(shard, event_id),
            mapping={
                "type": "lead.test",
                "session": session_id,
                "site": site,
                "status": "pending",
                "created": now,
                "next": now,
                "attempts": 0,
            },
        )
        pipe.pexpire(keys.event(shard, event_id), self.store.retention_ms)
        pipe.zadd(keys.outbox_due(shard), {event_id: now})
        pipe.zadd(keys.deliveries(shard), {event_id: now})

    async def push_inbox(self, payload: dict[str, Any]) -> bool:
        """The built-in inbox: where leads go when a site has no webhook.

        Each event is pushed once, however often it is delivered (``inbox_push.lua``).
        Real leads are kept for the retention (the oldest past it are pruned here),
        test events in a capped list of their own, so a flood of test events never
        pushes a lead out. The inbox is one key of its own (another hash slot than the
        event), so an erase racing this push is caught by looking at the event's
        ``erased`` mark before and after: marked before, nothing is pushed; marked
        meanwhile, the entry is taken out again (the erase may have scanned the inbox
        before it landed). False when the lead was not (or no longer is) in the inbox.
        """
        event_id = str(payload["id"])
        event_key = keys.event(self.store.shard(keys.event_session(event_id)), event_id)
        if await self.redis.hexists(event_key, "erased"):
            return False
        now = await self.store.now_ms()
        raw = json.dumps({**payload, "at": now})
        test = payload.get("type") == "lead.test"
        key = keys.INBOX_TESTS if test else keys.INBOX
        keep = INBOX_TESTS_KEEP if test else 0
        with Translated("pushing to the inbox"):
            pushed = await self.store.script("inbox_push")(
                keys=[key, keys.inbox_pushed(key)], args=[event_id, raw, keep, now]
            )
        if not pushed:
            return True  # delivered before: a worker died before settling it
        if await self.redis.hexists(event_key, "erased"):
            await self.redis.lrem(key, 0, raw)
            return False
        if not test:
            await self._prune_inbox(now - self.store.retention_ms)
        return True

    async def _prune_inbox(self, before_ms: int) -> None:
        """Drop leads delivered before ``before_ms`` from the inbox's old end."""
        for _ in range(PRUNE_PER_PUSH):
            oldest = await self.redis.lindex(keys.INBOX, -1)
            entry = None if oldest is None else decode_entry(oldest)
            if oldest is None or (entry is not None and entry_ms(entry) >= before_ms):
                return
            await self.redis.lrem(keys.INBOX, -1, str(oldest))  # racing: removes 0
            if entry is not None and entry.get("id"):
                await self.redis.hdel(keys.inbox_pushed(keys.INBOX), str(entry["id"]))

    async def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest real leads of the inbox."""
        return [json.loads(item) for item in await self.redis.lrange(keys.INBOX, 0, limit - 1)]
