"""Request budgets shared by every worker: a rolling window per vendor credential.

CRMs limit requests per credential over a window (Copper 180 a minute, HubSpot 100
in 10 seconds). Before each call a format takes one unit from the budget in Redis
(:func:`take`); over the limit nothing is sent and the event is deferred by the
seconds :func:`take` returns, which is not counted as a delivery attempt
(:func:`over_budget`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import TYPE_CHECKING

from . import SendResult

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["key", "over_budget", "take", "wait"]


def key(vendor: str, credential: str) -> str:
    """Redis key of the budget shared by every worker using this credential (hashed)."""
    digest = hashlib.sha256(credential.encode()).hexdigest()[:16]
    return f"chatlead:crm-budget:{vendor}:{digest}"


def wait(oldest: float, now: float, window: float) -> float:
    """Whole seconds until the oldest counted request leaves the window (at least 1)."""
    return float(max(1, math.ceil(oldest + window - now)))


async def take(redis: Redis, budget: str, *, limit: int, window: float) -> float | None:
    """Count one request against the rolling-window budget at ``budget``.

    A sorted set holds one member per request of the last ``window`` seconds,
    scored by Redis' clock (shared by all workers). Adding, trimming and counting
    run in one MULTI; a request over ``limit`` removes its own member again.

    Returns:
        ``None`` when the request may be sent, else the seconds to wait.
    """
    seconds, micros = await redis.time()
    now = seconds + micros / 1_000_000
    member = f"{now:.6f}:{secrets.token_hex(4)}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(budget, "-inf", now - window)
        pipe.zadd(budget, {member: now})
        pipe.zcard(budget)
        pipe.zrange(budget, 0, 0, withscores=True)
        pipe.expire(budget, math.ceil(window) + 1)
        _, _, count, oldest, _ = await pipe.execute()
    if count <= limit:
        return None
    await redis.zrem(budget, member)
    return wait(float(oldest[0][1]) if oldest else now, now, window)


def over_budget(vendor: str, limit: int, per: str, seconds: float) -> SendResult:
    """The result of a request held back by its budget: deferred, not an attempt."""
    return SendResult(
        ok=False,
        retryable=True,
        error=f"{vendor} request budget ({limit}/{per}) used up; not sent",
        retry_after=seconds,
        sent=False,
    )
