"""Sessions in Redis: the only module that talks to Redis about sessions.

Every state change is one Lua script (``server/lua/*.lua``, each prefixed with
``_prelude.lua``), called by EVALSHA: one round trip per visitor event. Scripts
are idempotent, because redis-py may retry a command that already ran.

The same code runs on one Redis (or Valkey) and on Redis Cluster: each script and
each multi-key read stays in one shard, i.e. one hash slot (docs/ARCHITECTURE.md, Redis layout), and
:func:`connect_redis` returns a cluster client when the server is a cluster node.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple, cast

import orjson
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from . import keys
from .errors import StoreError, StoreMisconfigured
from .resp import Pipe, pack_script_call
from .session import SessionRecord, Verdict, parse_session

__all__ = [
    "Coalescer",
    "HASH",
    "REDIS_ERRORS",
    "Translated",
    "Store",
    "SweepResult",
    "VisitorResult",
    "connect_redis",
    "run_each",
]

POOL_SIZE = 50
MAX_TRANSCRIPT = 2000
"""Transcript entries per session; beyond it visitor events are refused (abuse cap)."""
MAX_TRANSCRIPT_BYTES = 256 * 1024
"""Transcript size per session; beyond it the oldest visitor texts are replaced by a
marker (the fields are kept)."""
EMPTY_SESSION_TTL_MS = 3600_000
"""How long a session is kept while its visitor has sent nothing (at least twice its
idle timeout, at most the retention)."""
HASH = "hash"
"""A read of a whole hash in :meth:`Store.read` (else a list start index)."""
REDIS_ERRORS = (RedisError, RedisClusterException)
"""What the Redis client raises: the cluster client also raises errors outside
``RedisError`` (e.g. a slot no node serves); translate both at the boundary."""


class Translated:
    """``with Translated("in sweep"):``: a Redis error inside becomes a :class:`StoreError`.

    The one place Redis' errors (redis-py's and the cluster client's) are translated;
    stateless, so an instance per call site costs nothing on the hot path.
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, REDIS_ERRORS):
            raise StoreError(f"Redis error {self.what}: {exc}") from exc


_IN_VISITOR = Translated("in visitor")


def _script_source(name: str) -> str:
    lua = resources.files(__package__ or "chatlead") / "lua"
    return (lua / "_prelude.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def connect_redis(url: str) -> aioredis.Redis | RedisCluster:
    """A client for ``url``: a cluster client when the server is a Redis Cluster node.

    Both have a short retry policy so an outage surfaces fast, and callers wait for a
    free connection (the default pools raise past their limit). Asking the server
    whether it is a cluster is one blocking call, made at start before anything is
    served; ``unix://`` servers are never asked.

    Raises:
        StoreError: the server could not be asked (a cluster node also refuses a
            database other than 0).
        StoreMisconfigured: a cluster this redis-py cannot serve.
    """
    if _is_cluster(url):
        return _cluster_client(url)
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


def _is_cluster(url: str) -> bool:
    if url.startswith("unix://"):
        return False
    probe = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        with Translated("reaching the server"):
            return str(probe.info("cluster").get("cluster_enabled")) == "1"
    finally:
        probe.close()


class QueuedRedisCluster(RedisCluster):
    """A cluster client whose callers wait for a free connection.

    redis-py's cluster client has no blocking pool: past ``max_connections`` to one
    node a command raises ``MaxConnectionsError`` (300 concurrent script calls lost
    250 of them). A semaphore of ``POOL_SIZE`` in front of every command queues
    callers instead, as ``BlockingConnectionPool`` does on one Redis; pipelines and
    pub/sub (a few at a time) use the per-node headroom above it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._free = asyncio.Semaphore(POOL_SIZE)

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        async with self._free:
            # Without a slot map (first use, or dropped after a node error) redis-py
            # sends a keyed command to a random node; a burst of MOVED replies then
            # makes it close every connection, in-flight commands included. Load the
            # map first (a no-op once loaded).
            await self.initialize()
            return await super().execute_command(*args, **kwargs)


def _cluster_client(url: str) -> RedisCluster:
    # cross-process notifications subscribe through the cluster client (redis-py 8)
    if not hasattr(RedisCluster, "pubsub"):
        raise StoreMisconfigured(
            f"Redis Cluster needs redis-py 8 or newer (this is {redis.__version__})"
        )
    try:
        return QueuedRedisCluster.from_url(
            url,
            decode_responses=True,
            max_connections=2 * POOL_SIZE,  # per node
            socket_timeout=5,
            socket_connect_timeout=3,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            health_check_interval=30,
        )
    except RedisClusterException as exc:
        raise StoreMisconfigured(f"cannot use this Redis Cluster: {exc}") from exc


async def _run_all(
    client: aioredis.Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    fast: Pipe | None = None,
) -> list[Any]:
    """Run ``script`` once per ``(keys, args)`` in one pipeline; each reply or error.

    Each call goes in as a plain EVALSHA, on ``fast`` when given, else on a redis-py
    pipeline: a cluster pipeline refuses ``evalsha()``, so ``script(...,
    client=pipe)`` fails there; it sends each node its share in parallel. A call
    answered NOSCRIPT (restart, failover, SCRIPT FLUSH) never ran; it is run again
    alone through redis-py, which loads the script.
    """
    replies: list[Any]
    if fast is not None:
        packed = [pack_script_call(script.sha, k, a) for k, a in calls]
        replies = await fast.execute(packed)
    else:
        async with client.pipeline(transaction=False) as pipe:
            for keys_, args in calls:
                pipe.execute_command("EVALSHA", script.sha, len(keys_), *keys_, *args)
            replies = await pipe.execute(raise_on_error=False)
    return await _load_and_rerun(script, calls, replies)


async def _load_and_rerun(
    script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[Any]]], replies: list[Any]
) -> list[Any]:
    """Run again, through redis-py (which loads the script), the calls answered NOSCRIPT."""
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            keys_, args = calls[i]
            try:
                replies[i] = await script(keys=keys_, args=args)
            except REDIS_ERRORS as exc:
                replies[i] = exc
    return replies


async def run_each(
    client: aioredis.Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
) -> list[Any]:
    """Like :func:`_run_all`, but raise the first error a call got."""
    replies = await _run_all(client, script, calls)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


_Batch = list[tuple[Sequence[str], list[Any], asyncio.Future[Any]]]


class Coalescer:
    """Script calls made during one event-loop tick go to Redis in one pipeline.

    Under load, hundreds of sockets each waiting for their own EVALSHA pay
    redis-py's per-command overhead (pool checkout, timeouts, parsing) once per
    message; sent together they pay it once per tick. Each caller still waits for
    exactly its own reply, so an ack still follows its own stored event.
    """

    def __init__(
        self, client: aioredis.Redis | RedisCluster, script: AsyncScript, fast: Pipe | None = None
    ) -> None:
        self.client = client
        self.script = script
        self.fast = fast
        self._pending: _Batch = []
        self._sending: set[asyncio.Task[None]] = set()

    def call(self, keys_: Sequence[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one call for this tick's batch; await the future for its reply.

        A plain function returning the future: the caller's wake-up then resumes one
        coroutine frame fewer.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys_, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if self.fast is not None:
            # on an open connection: write now and answer from the reply callback,
            # no task and no coroutine per tick
            sha = self.script.sha
            sent = self.fast.submit([pack_script_call(sha, k, a) for k, a, _ in batch])
            if sent is not None:
                sent.add_done_callback(functools.partial(self._answered, batch))
                return
        self._spawn(self._send(batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _answered(self, batch: _Batch, sent: asyncio.Future[list[Any]]) -> None:
        error = sent.exception()
        replies = [error] * len(batch) if error is not None else sent.result()
        if any(isinstance(reply, NoScriptError) for reply in replies):
            self._spawn(self._rerun(batch, replies))
            return
        self._answer(batch, replies)

    async def _rerun(self, batch: _Batch, replies: list[Any]) -> None:
        calls = [(k, a) for k, a, _ in batch]
        self._answer(batch, await _load_and_rerun(self.script, calls, replies))

    async def _send(self, batch: _Batch) -> None:
        try:
            calls = [(k, a) for k, a, _ in batch]
            replies = await _run_all(self.client, self.script, calls, self.fast)
        except REDIS_ERRORS as exc:
            replies = [exc] * len(batch)
        self._answer(batch, replies)

    @staticmethod
    def _answer(batch: _Batch, replies: list[Any]) -> None:
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller went away; the script ran or not, both fine
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


@functools.lru_cache(maxsize=8192)
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
    ) -> None:
        """Args:
        fast: a pipelined connection to the same (non-cluster) Redis for visitor
            events, the hot path (:mod:`server.resp`); else they go through redis-py.
        """
        # Both clients offer the same commands (the cluster one routes each by key
        # slot), and the rest of chatlead is written against that shared surface.
        self.redis = cast(aioredis.Redis, client)
        self.cluster = client if isinstance(client, RedisCluster) else None
        self.shards = shards
        self.retention_ms = int(retention_s * 1000)
        self.msg_rate, self.msg_burst = msg_rate, msg_burst
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(_script_source(name))
            for name in (
                "create",
                "visitor",
                "sweep",
                "claim",
                "settle",
                "replay",
                "read",
                "slot",
                "unslot",
                "session_rate",
            )
        }
        # the calls many sockets (or deliveries) make at once share a pipeline
        self.fast = fast
        self._visitor = Coalescer(client, self._scripts["visitor"], fast)
        self._read = Coalescer(client, self._scripts["read"])
        self.settle_calls = Coalescer(client, self._scripts["settle"])

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
        with Translated("reaching the server"):
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
    ) -> VisitorResult:
        """Apply one visitor event atomically (dedupe, append, fields, deadline, outbox)."""
        shard = self.shard(session_id)
        event = {
            "id": client_id,
            "seq": expected_seq,
            "visitor": visitor_entry,
            "bots": bot_entries,
            "updates": updates,
            "step": step,
            "completes": completes,
            "max": MAX_TRANSCRIPT,
            "max_bytes": MAX_TRANSCRIPT_BYTES,
            **({"completed_id": keys.completed_event(session_id)} if completes else {}),
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
        if kind is Verdict.DUP or kind is Verdict.STALE:
            return VisitorResult(kind, int(result[1]))
        return VisitorResult(kind)

    async def sweep(self, limit: int = 500) -> SweepResult:
        """Flag expired sessions in every shard (one round trip for all shards)."""
        args = (limit, self.retention_ms)
        calls = [
            ([keys.deadlines(shard)], [*args, keys.tag(shard), keys.ABANDONED_EVENT])
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
