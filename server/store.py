"""Sessions in Redis: the only module that talks to Redis about sessions.

Every state change is one Lua script (``server/lua/*.lua``, each prefixed with
``_prelude.lua``), called by EVALSHA: one round trip per visitor event. Scripts
are idempotent, because redis-py may retry a command that already ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server import keys
from server.errors import StoreError, StoreMisconfigured
from server.session import SessionRecord, parse_session

__all__ = ["Store", "SweepResult", "VisitorResult", "connect_redis"]

POOL_SIZE = 50


def _script_source(name: str) -> str:
    lua = resources.files("server") / "lua"
    return (lua / "_prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def connect_redis(url: str) -> aioredis.Redis:
    """A client with a blocking pool (the default pool raises past its limit)
    and a short retry policy so an outage surfaces fast."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=5,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=3,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


@dataclass(frozen=True)
class VisitorResult:
    """Answer of the visitor script; ``kind`` is ok | dup | stale | closed | gone."""

    kind: str
    seq: int = 0
    first_bot_seq: int = 0
    now_ms: int = 0
    recovered: bool = False


@dataclass(frozen=True)
class SweepResult:
    flagged: list[str]
    next_deadline_ms: int | None
    now_ms: int
    full: bool
    late_ms: int = 0


class Store:
    """Session storage on one Redis (or Valkey, or Cluster) connection."""

    def __init__(self, redis: aioredis.Redis, shards: int, retention_s: float) -> None:
        self.redis = redis
        self.shards = shards
        self.retention_ms = int(retention_s * 1000)
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(_script_source(name))
            for name in ("create", "visitor", "sweep", "claim", "settle", "replay")
        }

    def script(self, name: str) -> AsyncScript:
        return self._scripts[name]

    def shard(self, session_id: str) -> int:
        return keys.shard_of(session_id, self.shards)

    async def check(self) -> None:
        """Refuse to run on a Redis that could evict data or has another shard count.

        Raises:
            StoreError: Redis is unreachable.
            StoreMisconfigured: eviction is on, or ``SHARDS`` differs from the stored one.
        """
        try:
            memory = await self.redis.info("memory")
            policy = memory.get("maxmemory_policy", "noeviction")
            await self.redis.hsetnx(keys.META, "shards", self.shards)
            stored = int(await self.redis.hget(keys.META, "shards") or self.shards)
        except RedisError as exc:
            raise StoreError(f"Redis unreachable: {exc}") from exc
        if policy != "noeviction":
            raise StoreMisconfigured(
                f"Redis maxmemory-policy is {policy!r}; chatlead needs 'noeviction' "
                "so that sessions and undelivered leads are never evicted"
            )
        if stored != self.shards:
            raise StoreMisconfigured(
                f"CHATLEAD_SHARDS={self.shards} but this Redis was set up with {stored} shards"
            )

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False

    async def _call(self, name: str, keys_: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[name](keys=keys_, args=args)
        except RedisError as exc:
            raise StoreError(f"Redis error in {name}: {exc}") from exc

    async def create_session(
        self, session_id: str, meta: dict[str, str], entries: list[dict[str, Any]]
    ) -> tuple[int, int]:
        """Store a new open session and its opening bot entries.

        Returns:
            ``(seq, created_ms)``.
        """
        shard = self.shard(session_id)
        result = await self._call(
            "create",
            [*keys.session_keys(shard, session_id), keys.deadlines(shard)],
            [session_id, json.dumps(meta), json.dumps(entries), self.retention_ms, keys.tag(shard)],
        )
        return int(result[0]), int(result[1])

    def queue_session_reads(self, pipe: Any, session_id: str, after_seq: int = 0) -> None:
        """Add the three reads of a session to ``pipe`` (see :meth:`session_from`)."""
        shard = self.shard(session_id)
        pipe.hgetall(keys.session(shard, session_id))
        pipe.hgetall(keys.fields(shard, session_id))
        # seq n is at index n-1: the transcript has no gaps (§3)
        pipe.lrange(keys.transcript(shard, session_id), after_seq, -1)

    @staticmethod
    def session_from(session_id: str, replies: list[Any]) -> SessionRecord | None:
        meta, fields, transcript = replies
        if not meta:
            return None
        return parse_session(session_id, meta, fields, transcript)

    async def load_session(self, session_id: str, after_seq: int = 0) -> SessionRecord | None:
        """The session with transcript entries after ``after_seq``, or None."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                self.queue_session_reads(pipe, session_id, after_seq)
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"Redis error loading a session: {exc}") from exc
        return self.session_from(session_id, replies)

    async def visitor_event(
        self,
        session_id: str,
        client_id: str,
        expected_seq: int,
        visitor_entry: dict[str, Any] | None,
        bot_entries: list[dict[str, Any]],
        updates: dict[str, str],
        step: str,
        completes: bool,
    ) -> VisitorResult:
        """Apply one visitor event atomically (dedupe, append, fields, deadline, outbox)."""
        shard = self.shard(session_id)
        result = await self._call(
            "visitor",
            [*keys.session_keys(shard, session_id), keys.deadlines(shard)],
            [
                session_id,
                client_id,
                expected_seq,
                json.dumps(visitor_entry) if visitor_entry else "",
                json.dumps(bot_entries),
                json.dumps(updates) if updates else "{}",
                step,
                "1" if completes else "0",
                self.retention_ms,
                keys.tag(shard),
            ],
        )
        kind = result[0]
        if kind == "ok":
            return VisitorResult(
                "ok", int(result[1]), int(result[2]), int(result[3]), result[4] == 1
            )
        if kind in ("dup", "stale"):
            return VisitorResult(kind, int(result[1]))
        return VisitorResult(kind)

    async def sweep(self, limit: int = 500) -> SweepResult:
        """Flag expired sessions in every shard (one round trip for all shards)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard in range(self.shards):
                    await self._scripts["sweep"](
                        keys=[keys.deadlines(shard)],
                        args=[limit, self.retention_ms, keys.tag(shard)],
                        client=pipe,
                    )
                results = await pipe.execute()
        except RedisError as exc:
            raise StoreError(f"Redis error in sweep: {exc}") from exc
        flagged: list[str] = []
        deadlines: list[int] = []
        now = 0
        full = False
        late = 0
        for ids, next_deadline, now_ms, late_ms in results:
            late = max(late, int(late_ms))
            flagged.extend(ids)
            full = full or len(ids) >= limit
            if next_deadline:
                deadlines.append(int(float(next_deadline)))
            now = max(now, int(now_ms))
        return SweepResult(flagged, min(deadlines) if deadlines else None, now, full, late)

    async def publish_abandoned(self, session_ids: list[str]) -> None:
        if session_ids:
            await self.redis.publish(keys.NOTIFY_CHANNEL, json.dumps({"abandoned": session_ids}))
