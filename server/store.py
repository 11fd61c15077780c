"""Sessions in Redis: the only module that talks to Redis about sessions.

Every state change is one Lua script (``server/lua/*.lua``, each prefixed with
``_prelude.lua``), called by EVALSHA: one round trip per visitor event. Scripts
are idempotent, because redis-py may retry a command that already ran.

The same code runs on one Redis (or Valkey) and on Redis Cluster: each script and
each multi-key read stays in one shard, i.e. one hash slot (docs/ARCHITECTURE.md,
Redis layout); the client comes from :mod:`chatlead.redis_client`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from . import keys
from .durability import Durability, WaitPlan, plan_for, refusal, shortfall
from .errors import StoreMisconfigured
from .redis_client import REDIS_ERRORS, Translated
from .resp import SESSIONS_CACHED, Pipe
from .scripts import Coalescer, run_each, script_source
from .session import SessionRecord, Verdict, parse_session
from .sites import Route

__all__ = [
    "HASH",
    "MAX_TRANSCRIPT",
    "MAX_TRANSCRIPT_BYTES",
    "Store",
    "SweepResult",
    "VisitorResult",
]
MAX_TRANSCRIPT = 2000
"""Transcript entries per session; beyond it visitor events are refused (abuse cap)."""
MAX_TRANSCRIPT_BYTES = 256 * 1024
"""Transcript size per session; beyond it the oldest visitor texts are replaced by a
marker (the fields are kept)."""
EMPTY_SESSION_TTL_MS = 3600_000
"""How long a session is kept while its visitor has sent nothing (at least twice its
idle timeout, at most the retention)."""
MAX_USER_SESSIONS = 50
"""An identified user's history keeps their latest sessions."""
HASH = "hash"
"""A read of a whole hash in :meth:`Store.read` (else a list start index)."""


_IN_VISITOR = Translated("in visitor")


@functools.lru_cache(maxsize=SESSIONS_CACHED)  # the sessions chatting now (resp.py)
def _visitor_keys(shard: int, session_id: str) -> tuple[str, ...]:
    """KEYS of ``visitor.lua``; built once per live session, not on every event."""
    return (*keys.session_keys(shard, session_id), keys.deadlines(shard))


class VisitorResult(NamedTuple):
    """Answer of the visitor script (``seq`` for ok, dup and stale; the rest for ok).

    A named tuple, not a frozen dataclass: one is built per visitor message.
    """

    kind: Verdict
    seq: int = 0
    first_bot_seq: int = 0
    now_ms: int = 0
    recovered: bool = False
    agent: str = ""
    """For stale: the agent holding the session now, or ``""``."""


@dataclass(frozen=True)
class SweepResult:
    flagged: list[str]
    next_deadline_ms: int | None
    now_ms: int
    full: bool
    late_ms: int = 0


class Store:
    """Session storage on one Redis (or Valkey, or Cluster) connection."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        shards: int,
        retention_s: float,
        *,
        msg_rate: float = 10.0,
        msg_burst: int = 30,
        fast: Pipe | None = None,
        durability: Durability = Durability.MEMORY,
        durability_timeout: float = 2.0,
    ) -> None:
        """Args:
        fast: a pipelined connection to the same (non-cluster) Redis for visitor
            events, the hot path (:mod:`server.resp`); else they go through redis-py.
        durability: what an ack waits for (§14); its wait commands are chosen by
            :meth:`check`, which knows the server.
        """
        # Both clients offer the same commands (the cluster one routes each by key
        # slot), and the rest of chatlead is written against that shared surface.
        self.redis = cast(aioredis.Redis, client)
        self.cluster = client if isinstance(client, RedisCluster) else None
        self.shards = shards
        self.retention_ms = int(retention_s * 1000)
        self.msg_rate, self.msg_burst = msg_rate, msg_burst
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name))
            for name in (
                "create",
                "visitor",
                "sweep",
                "claim",
                "read",
                "slot",
                "unslot",
                "session_rate",
                "lead_rate",
                "release",
                "inbox_push",
            )
        }
        for name in ("report_rows", "report_page"):  # the admin reads
            self._scripts[name] = client.register_script(script_source(name, "_report_row"))
        for name in ("settle", "replay"):  # they keep each destination's health
            self._scripts[name] = client.register_script(script_source(name, "_health"))
        # the calls many sockets (or deliveries) make at once share a pipeline
        self.fast = fast
        self._visitor = Coalescer(client, self._scripts["visitor"], fast)
        self._read = Coalescer(client, self._scripts["read"])
        self.settle_calls = Coalescer(client, self._scripts["settle"])
        self.plan = WaitPlan(durability, durability_timeout)
        """What confirms a write that is acknowledged to someone (none under ``memory``)."""

    async def now_ms(self) -> int:
        """Redis' clock in ms, the one the scripts use.

        Raises:
            StoreError: Redis is unreachable.
        """
        with Translated("reading Redis' clock"):
            sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def script(self, name: str) -> AsyncScript:
        return self._scripts[name]

    def shard(self, session_id: str) -> int:
        return keys.shard_of(session_id, self.shards)

    async def check(self) -> None:
        """Refuse to run on a Redis that could evict data or has another shard count.

        Raises:
            StoreError: Redis is unreachable.
            StoreMisconfigured: eviction is on, ``SHARDS`` differs from the stored one,
                or the server cannot honour ``DURABILITY``.
        """
        with Translated("reaching the server"):
            if self.plan.mode is not Durability.MEMORY:
                await self._plan_durability()
            policies = await self._eviction_policies()
            await self.redis.hsetnx(keys.META, "shards", self.shards)
            stored = int(await self.redis.hget(keys.META, "shards") or self.shards)
        for where, policy in policies.items():
            if policy != "noeviction":
                raise StoreMisconfigured(
                    f"Redis maxmemory-policy is {policy!r}{where}; chatlead needs "
                    "'noeviction' so that sessions and undelivered leads are never evicted"
                )
        if stored != self.shards:
            raise StoreMisconfigured(
                f"CHATLEAD_SHARDS={self.shards} but this Redis was set up with {stored} shards"
            )

    async def _plan_durability(self) -> None:
        """Choose the wait commands for this server, or refuse a mode it cannot honour."""
        server = await self.redis.info("server")
        persistence = await self.redis.info("persistence")
        refused = refusal(self.plan.mode, server, persistence, cluster=self.cluster is not None)
        if refused is not None:
            raise StoreMisconfigured(refused)
        self.plan = plan_for(self.plan.mode, self.plan.timeout_s, server, persistence)
        # Visitor events are acked to the visitor: each tick's batch waits. Settle
        # does not: a lost outcome only sends the event again under its id.
        self._visitor.confirm_with(self.plan)

    async def durability_problem(self) -> str | None:
        """Why writes are not being confirmed now (None: they are, or ``memory``).

        Bumps a probe counter and waits for it as an ack would: up to
        ``DURABILITY_TIMEOUT``.
        """
        if not self.plan.confirms:
            return None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(keys.DURABILITY_PROBE)
                for command in self.plan.commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:
            return f"durability {self.plan.mode}: {exc}"
        return shortfall(self.plan, replies[1:])

    async def _eviction_policies(self) -> dict[str, str]:
        """``maxmemory-policy`` of the server, or of every primary of a cluster."""
        if self.cluster is None:
            return {"": (await self.redis.info("memory")).get("maxmemory_policy", "noeviction")}
        await self.cluster.initialize()
        primaries = self.cluster.get_primaries()
        infos = await asyncio.gather(
            *(self.cluster.info("memory", target_nodes=node) for node in primaries)
        )
        return {
            f" on {node.name}": info.get("maxmemory_policy", "noeviction")
            for node, info in zip(primaries, infos, strict=True)
        }

    async def aclose(self) -> None:
        if self.fast is not None:
            self.fast.close()
        await self.redis.aclose()

    async def gauges(self) -> tuple[int, int]:
        """Events waiting for delivery and open sessions, over every shard (one round trip)."""
        with Translated("reading the gauges"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard in range(self.shards):
                    pipe.zcard(keys.outbox_due(shard))
                    pipe.zcard(keys.deadlines(shard))
                counts = await pipe.execute()
        return sum(counts[0::2]), sum(counts[1::2])

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except REDIS_ERRORS:
            return False

    async def _call(self, name: str, keys_: list[str], args: list[Any]) -> Any:
        with Translated(f"in {name}"):
            return await self._scripts[name](keys=keys_, args=args)

    async def create_session(
        self, session_id: str, meta: dict[str, str], entries: list[dict[str, Any]]
    ) -> tuple[int, int]:
        """Store a new open session and its opening bot entries.

        Returns:
            ``(seq, created_ms)``.
        """
        shard = self.shard(session_id)
        empty_ttl = min(self.retention_ms, max(EMPTY_SESSION_TTL_MS, 2 * int(meta["idle"])))
        result = await self._call(
            "create",
            [*keys.session_keys(shard, session_id), keys.deadlines(shard)],
            [
                session_id,
                json.dumps(meta),
                json.dumps(entries),
                self.retention_ms,
                keys.tag(shard),
                empty_ttl,
            ],
        )
        return int(result[0]), int(result[1])

    async def remember_user(
        self, site: str, user_id: str, session_id: str, created_ms: int
    ) -> None:
        """Add a session to its identified user's history (kept for the retention)."""
        key = keys.user_sessions(site, user_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {session_id: created_ms})
            pipe.zremrangebyrank(key, 0, -(MAX_USER_SESSIONS + 1))
            pipe.pexpire(key, self.retention_ms)
            await pipe.execute()

    async def user_sessions(
        self, site: str, user_id: str, besides: str
    ) -> list[tuple[str, str, int]]:
        """``(id, status, created ms)`` of the user's other sessions on ``site`` than
        ``besides``, newest first (of the last 50; an erased or expired one is left out)."""
        found = await self.redis.zrevrange(keys.user_sessions(site, user_id), 0, -1)
        ids = [str(sid) for sid in found if str(sid) != besides]
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hmget(keys.session(self.shard(sid), sid), "status", "created")
            rows = await pipe.execute()
        return [
            (sid, status, int(created))
            for sid, (status, created) in zip(ids, rows, strict=True)
            if status is not None and created is not None
        ]

    async def read(self, reads: Sequence[tuple[str, int | str]]) -> list[Any]:
        """Read keys of one shard in one atomic step (``read.lua``).

        Args:
            reads: ``(key, HASH)`` for a whole hash, ``(key, start)`` for the items of
                a list from index ``start``; all keys in one shard.

        Returns:
            One reply per read: a dict for a hash, a list of strings for a list.
        """
        replies = await self._read.call([key for key, _ in reads], [how for _, how in reads])
        return [
            dict(zip(reply[::2], reply[1::2], strict=True)) if how == HASH else reply
            for (_, how), reply in zip(reads, replies, strict=True)
        ]

    def session_reads(self, session_id: str, after_seq: int = 0) -> list[tuple[str, int | str]]:
        """The three reads of a session for :meth:`read` (see :meth:`session_from`)."""
        shard = self.shard(session_id)
        return [
            (keys.session(shard, session_id), HASH),
            (keys.fields(shard, session_id), HASH),
            # seq n is at index n-1: the transcript has no gaps (§3)
            (keys.transcript(shard, session_id), after_seq),
        ]

    @staticmethod
    def session_from(session_id: str, replies: list[Any]) -> SessionRecord | None:
        meta, fields, transcript = replies
        if not meta:
            return None
        return parse_session(session_id, meta, fields, transcript)

    async def load_session(self, session_id: str, after_seq: int = 0) -> SessionRecord | None:
        """The session with transcript entries after ``after_seq``, or None."""
        with Translated("loading a session"):
            replies = await self.read(self.session_reads(session_id, after_seq))
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
        completed_to: Sequence[Route] = ("",),
        agent: str = "",
        stamp: str = "",
        spam: str = "",
        min_fill_ms: int = 0,
    ) -> VisitorResult:
        """Apply one visitor event atomically (dedupe, append, fields, deadline, outbox).

        ``completed_to``: the destinations (:data:`~chatlead.sites.Route`) that take the
        ``lead.completed`` event, when this event completes the session; ``agent``: who
        the caller believes holds the session (``""``: no one; the store checks it);
        ``stamp``: a field set to Redis' time now (ISO-8601); ``spam``: why this event
        flags the session spam (:mod:`chatlead.spam`); ``min_fill_ms``: a completion
        sooner than this after the start is spam too.
        """
        shard = self.shard(session_id)
        event = {
            "id": client_id,
            "seq": expected_seq,
            "visitor": visitor_entry,
            "bots": bot_entries,
            "updates": updates,
            "step": step,
            "completes": completes,
            "agent": agent,
            **({"stamp": stamp} if stamp else {}),
            **({"spam": spam} if spam else {}),
            **({"min_fill": min_fill_ms} if min_fill_ms and completes else {}),
            "max": MAX_TRANSCRIPT,
            "max_bytes": MAX_TRANSCRIPT_BYTES,
            **(
                {"completed_id": keys.completed_event(session_id), "completed_to": completed_to}
                if completes
                else {}
            ),
            "rate": self.msg_rate,
            "burst": self.msg_burst,
        }
        call = self._visitor.call(
            _visitor_keys(shard, session_id),
            [session_id, self.retention_ms, keys.tag(shard), orjson.dumps(event)],
        )
        with _IN_VISITOR:
            result = await call
        kind = Verdict(result[0])
        if kind is Verdict.OK:
            return VisitorResult(
                kind, int(result[1]), int(result[2]), int(result[3]), result[4] == 1
            )
        if kind is Verdict.STALE:
            return VisitorResult(kind, int(result[1]), agent=result[2])
        if kind is Verdict.DUP:
            return VisitorResult(kind, int(result[1]))
        return VisitorResult(kind)

    async def sweep(
        self,
        limit: int = 500,
        abandoned_to: Mapping[str, Sequence[Route]] | None = None,
        reminders: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> SweepResult:
        """Flag expired sessions in every shard (one round trip for all shards).

        ``abandoned_to``: per site, the event id suffixes of the destinations that take
        ``lead.abandoned`` (a site not in it: the webhook's). ``reminders``: per site,
        its reminder plan (``recovery.reminder_plans``).
        """
        routes = json.dumps({site: list(s) for site, s in (abandoned_to or {}).items()} or {})
        later = json.dumps(dict(reminders or {}) or {})
        args = (limit, self.retention_ms)
        calls = [
            (
                [keys.deadlines(shard)],
                [*args, keys.tag(shard), keys.ABANDONED_EVENT, routes, keys.REMINDER_EVENT, later],
            )
            for shard in range(self.shards)
        ]
        with Translated("in sweep"):
            results = await run_each(self.redis, self._scripts["sweep"], calls)
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
