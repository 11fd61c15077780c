"""Erase one session's personal data everywhere chatlead keeps it (GDPR art. 17).

What holds personal data, and what erasing does to it:

- the session keys (hash with page data, fields, transcript, client ids, event
  queue): deleted, so the session and its report rows are gone;
- the report indexes (``idx:<site>:*``) and the deadline set: the id is removed;
- its outbox events: their lead is built from the session at send time, so no
  payload survives; pending ones are dead-lettered with the error ``erased``,
  and every attempt log loses its CRM response snippet (a CRM may echo the
  lead) and any captured value quoted in an error. Each event is marked
  ``erased``, so an attempt in flight while erasing is recorded without its
  response (``settle.lua``) and its lead never lands in the inbox;
- the built-in inbox: the session's delivered leads are removed, with their
  handled marks.

The per-day counters are anonymous and stay. The shard's keys change in one
``MULTI`` (watched, retried if a delivery lands meanwhile); the inbox is a
global key and changes in a second step. Finally ``BGREWRITEAOF`` rewrites the
append-only file, so no copy of the erased data survives on disk there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError, WatchError

from .. import keys
from ..errors import StoreError
from ..redis_client import REDIS_ERRORS, Translated
from ..runtime import Runtime
from ..sites import FieldKind

__all__ = ["EraseResult", "erase_session", "rewrite_aof", "scrub_attempt"]

log = logging.getLogger("chatlead.erase")

ERASED = "erased"
WATCH_RETRIES = 5
AOF_WAIT_S = 120.0

_background: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class EraseResult:
    session_id: str
    found: bool
    keys_deleted: int = 0
    events_dead_lettered: int = 0
    events_scrubbed: int = 0
    inbox_removed: int = 0
    aof_rewrite: str = "off"


def scrub_attempt(raw: str, secrets_: list[str]) -> str:
    """An attempt record without its response snippet and without personal values."""
    try:
        attempt = json.loads(raw)
    except ValueError:
        return json.dumps({"error": ERASED})
    if not isinstance(attempt, dict):
        return json.dumps({"error": ERASED})
    attempt.pop("response", None)
    error = attempt.get("error")
    if isinstance(error, str):
        for value in secrets_:
            error = error.replace(value, "[erased]")
        attempt["error"] = error
    return json.dumps(attempt)


async def _event_ids(runtime: Runtime, shard: int, session_id: str, abandons: int) -> list[str]:
    """Every event of the session: the predictable ids plus any left in the log."""
    ids = {keys.completed_event(session_id)}
    ids.update(keys.abandoned_event(session_id, n) for n in range(1, abandons + 1))
    redis = runtime.store.redis
    async for member, _ in redis.zscan_iter(
        keys.deliveries(shard), match=keys.session_events_glob(session_id), count=1000
    ):
        ids.add(member)
    return sorted(ids)


async def _erase_shard(runtime: Runtime, session_id: str) -> EraseResult:
    store = runtime.store
    shard = store.shard(session_id)
    session_keys = keys.session_keys(shard, session_id)
    redis = store.redis
    for _ in range(WATCH_RETRIES):
        now = await store.now_ms()  # outside the transaction: TIME names no key
        abandons = await redis.hget(keys.session(shard, session_id), "abandons")
        event_ids = await _event_ids(runtime, shard, session_id, int(abandons or 0))
        event_keys = [keys.event(shard, eid) for eid in event_ids]
        attempt_keys = [keys.event_attempts(shard, eid) for eid in event_ids]
        pipe: Any
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*session_keys, *event_keys, *attempt_keys)
                meta: dict[str, str] = await pipe.hgetall(session_keys[0])
                fields: dict[str, str] = await pipe.hgetall(session_keys[1])
                statuses: list[str | None] = [await pipe.hget(k, "status") for k in event_keys]
                attempts: list[list[str]] = [await pipe.lrange(k, 0, -1) for k in attempt_keys]
                personal = sorted({v for v in fields.values() if len(v) >= 3}, key=len)[::-1]
                pipe.multi()
                pipe.delete(*session_keys)
                queues = {keys.event_suffix(eid) for eid in event_ids} - {""}
                for suffix in sorted(queues):  # each destination's queue of this session
                    pipe.delete(keys.session_events(shard, session_id, suffix))
                pipe.zrem(keys.deadlines(shard), session_id)
                sites = [meta["site"]] if meta.get("site") else list(runtime.sites)
                for site in sites:
                    for kind in keys.INDEX_KINDS:
                        pipe.zrem(keys.site_index(shard, site, kind), session_id)
                dead = 0
                for eid, key, status in zip(event_ids, event_keys, statuses, strict=True):
                    if status is not None:
                        pipe.hset(key, ERASED, "1")
                    if status == "pending":
                        dead += 1
                        pipe.hset(key, mapping={"status": "dead", "settled": now})
                        pipe.hdel(key, "next", "lease")
                        pipe.zrem(keys.outbox_due(shard), eid)
                scrubbed = 0
                for key, log_, status in zip(attempt_keys, attempts, statuses, strict=True):
                    clean = [scrub_attempt(a, personal) for a in log_]
                    if status == "pending":
                        clean.append(
                            json.dumps(
                                {"at": now, "status_code": None, "latency_ms": 0, "error": ERASED}
                            )
                        )
                    if clean != log_:
                        scrubbed += 1
                        pipe.delete(key)
                        pipe.rpush(key, *clean)
                        pipe.pexpire(key, store.retention_ms)
                results = await pipe.execute()
            except WatchError:
                continue
        deleted = int(results[0])
        await _release_bookings(runtime, meta.get("site", ""), fields, session_id)
        if meta.get("identified") and meta.get("uid"):  # off the user's history
            await redis.zrem(keys.user_sessions(meta["site"], meta["uid"]), session_id)
        # found: something of the person was still stored (a repeat finds nothing)
        return EraseResult(session_id, bool(deleted or dead or scrubbed), deleted, dead, scrubbed)
    raise StoreError(f"session {session_id} kept changing while being erased; try again")


def _event_of(event_id: str) -> str | None:
    try:
        return keys.event_session(event_id)
    except ValueError:
        return None


async def _erase_inbox(runtime: Runtime, session_id: str) -> int:
    redis: Any = runtime.store.redis
    removed = 0
    entries: list[str] = await redis.lrange(keys.INBOX, 0, -1)
    for raw in entries:
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        data = item.get("data")
        owner = data.get("sessionId") if isinstance(data, dict) else None
        event_id = str(item.get("id", ""))
        if owner == session_id or _event_of(event_id) == session_id:
            removed += int(await redis.lrem(keys.INBOX, 0, raw))
            await redis.hdel(keys.inbox_pushed(keys.INBOX), event_id)
            await redis.zrem(keys.INBOX_HANDLED, event_id)
    return removed


async def _aof_state(redis: Any, node: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = await redis.info("persistence", **node)
    return info


async def rewrite_aof(store: Any) -> str:
    """Ask the server (every primary of a cluster) to rewrite its append-only file.

    Returns:
        ``off`` (no AOF), ``started``, ``scheduled`` (after a running save), or
        ``queued`` (a rewrite that began before the erase is running; another
        one is started when it ends, in the background).
    """
    cluster = getattr(store, "cluster", None)
    if cluster is None:
        return await _rewrite(store.redis, {})
    outcomes = [await _rewrite(cluster, {"target_nodes": node}) for node in cluster.get_primaries()]
    for outcome in ("queued", "scheduled", "started"):
        if outcome in outcomes:
            return outcome
    return "off"


async def _rewrite(redis: Any, node: dict[str, Any]) -> str:
    if int((await _aof_state(redis, node)).get("aof_enabled", 0)) != 1:
        return "off"
    try:
        answer = str(await redis.bgrewriteaof(**node))
    except ResponseError as exc:
        if "in progress" not in str(exc):
            raise
        # that rewrite forked before the erase and would keep the data: go again after it
        task = asyncio.create_task(_rewrite_after_current(redis, node))
        _background.add(task)
        task.add_done_callback(_background.discard)
        return "queued"
    return "scheduled" if "scheduled" in answer.lower() else "started"


async def _rewrite_after_current(redis: Any, node: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AOF_WAIT_S
    try:
        while loop.time() < deadline:
            if int((await _aof_state(redis, node)).get("aof_rewrite_in_progress", 0)) == 0:
                await redis.bgrewriteaof(**node)
                return
            await asyncio.sleep(0.1)
        log.warning("aof_rewrite_not_started reason=previous rewrite still running")
    except REDIS_ERRORS as exc:
        log.warning("aof_rewrite_failed error=%s", exc)


async def _release_bookings(
    runtime: Runtime, site_id: str, fields: dict[str, str], session_id: str
) -> None:
    """Give up the appointment slots the session holds (each its own key and slot, so
    after the transaction; a booking names the session id)."""
    site = runtime.sites.get(site_id)
    for step in site.flow if site else ():
        value = fields.get(step.field)
        if step.kind is FieldKind.SLOT and value:
            await runtime.bookings.release(site_id, value, session_id)


async def erase_session(runtime: Runtime, session_id: str) -> EraseResult:
    """Erase ``session_id`` (a validated 24-hex id); idempotent.

    Raises:
        StoreError: Redis failed; erasing again completes the job.
    """
    with Translated("while erasing"):
        shard_result = await _erase_shard(runtime, session_id)
        inbox = await _erase_inbox(runtime, session_id)
        found = shard_result.found or inbox > 0
        aof = await rewrite_aof(runtime.store) if found else "off"
    log.info(
        "session_erased session=%s keys=%d events_dead=%d inbox=%d aof=%s",
        session_id,
        shard_result.keys_deleted,
        shard_result.events_dead_lettered,
        inbox,
        aof,
    )
    return EraseResult(
        session_id,
        found,
        shard_result.keys_deleted,
        shard_result.events_dead_lettered,
        shard_result.events_scrubbed,
        inbox,
        aof,
    )
