"""The Redis edge: one client per process, and the one translation of Redis' errors.

:func:`connect_redis` returns a cluster client when the server is a Redis Cluster
node; every other module reaches Redis through a client made here, and turns its
errors into :class:`~chatlead.errors.StoreError` with :class:`Translated`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from .errors import StoreError, StoreMisconfigured

__all__ = [
    "POOL_SIZE",
    "REDIS_ERRORS",
    "REPLY_TIMEOUT_S",
    "Translated",
    "connect_redis",
    "connect_sentinel",
    "find_master",
    "parse_sentinels",
]

POOL_SIZE = 50
REPLY_TIMEOUT_S = 5.0
"""How long a reply may take (plus ``DURABILITY_TIMEOUT`` where writes are confirmed)."""
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


def connect_redis(url: str, extra_timeout: float = 0.0) -> aioredis.Redis | RedisCluster:
    """A client for ``url``: a cluster client when the server is a Redis Cluster node.

    Both have a short retry policy so an outage surfaces fast, and callers wait for a
    free connection (the default pools raise past their limit). A reply may take
    ``REPLY_TIMEOUT_S`` plus ``extra_timeout`` (the longest ``WAIT``). Asking the server
    whether it is a cluster is one blocking call, made at start before anything is
    served; ``unix://`` servers are never asked.

    Raises:
        StoreError: the server could not be asked (a cluster node also refuses a
            database other than 0).
        StoreMisconfigured: a cluster this redis-py cannot serve.
    """
    timeout = REPLY_TIMEOUT_S + extra_timeout
    if _is_cluster(url):
        return _cluster_client(url)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=5,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=3,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


class _QueuedSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's connections through Sentinel, callers waiting for a free one (a
    plain ``SentinelConnectionPool`` raises past its limit, as the default pool does)."""


def parse_sentinels(addresses: tuple[str, ...]) -> list[tuple[str, int]]:
    """``host:port`` texts (validated by the settings) as ``(host, port)``."""
    return [(a.rpartition(":")[0], int(a.rpartition(":")[2])) for a in addresses]


def connect_sentinel(
    addresses: tuple[str, ...], master: str, extra_timeout: float = 0.0
) -> tuple[aioredis.Redis, Sentinel]:
    """A client for Sentinel's current ``master``, and the Sentinel client behind it.

    Each new connection asks Sentinel where the master is; a connection to a server
    that is no longer the master (``READONLY``) or that went away is dropped, so the
    next command, and pub/sub's next subscription, follow a failover.
    """
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        parse_sentinels(addresses),
        sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1},
    )
    client = sentinel.master_for(
        master,
        redis_class=aioredis.Redis,
        connection_pool_class=_QueuedSentinelPool,
        max_connections=POOL_SIZE,
        timeout=5,
        decode_responses=True,
        socket_timeout=REPLY_TIMEOUT_S + extra_timeout,
        socket_connect_timeout=3,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )
    return client, sentinel


_NO_RETRY = redis.retry.Retry(NoBackoff(), 0)


def find_master(addresses: tuple[str, ...], master: str, url: str | None = None) -> str:
    """The URL of Sentinel's current ``master`` (credentials and database from ``url``),
    asked once, blocking, at start.

    Raises:
        StoreError: no Sentinel answered (naming ``REDIS_SENTINEL``), or none knows
            ``master`` (naming ``REDIS_MASTER``).
    """
    from urllib.parse import urlsplit, urlunsplit

    answered = []
    for host, port in parse_sentinels(addresses):
        probe = redis.Redis(
            host=host, port=port, socket_connect_timeout=1, socket_timeout=1, retry=_NO_RETRY
        )
        try:
            found = probe.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master
            )
        except (redis.RedisError, OSError):
            continue
        finally:
            probe.close()
        answered.append(f"{host}:{port}")
        if found:
            address = f"{found[0].decode()}:{int(found[1])}"
            parts = urlsplit(url or "redis:///0")
            credentials = parts.netloc.rpartition("@")[0]
            netloc = f"{credentials}@{address}" if credentials else address
            return urlunsplit((parts.scheme, netloc, parts.path or "/0", parts.query, ""))
    if not answered:
        raise StoreError(f"CHATLEAD_REDIS_SENTINEL: no Sentinel answered at {','.join(addresses)}")
    raise StoreError(
        f"CHATLEAD_REDIS_MASTER: the Sentinels at {','.join(answered)} know no master {master!r}"
    )


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
