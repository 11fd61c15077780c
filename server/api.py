"""The admin HTTP API (``/api/*``, CONTRACT §5 and §7) and the Redis reads behind it.

:class:`Reader` fetches raw data with pipelined Redis commands and hands it to
the pure functions of :mod:`server.reports`; the routes below, the admin pages
and the CLI all go through it. Report indexes are one sorted set per shard and
site, so a page is a newest-first merge of those sets (:class:`IndexMerge`),
fetched a page of each at a time: the first page costs the same with 100 or
100,000 rows, and a CSV export streams in constant memory.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, TypeVar

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from . import auth, keys, reports
from .erase import erase_session
from .errors import StoreError
from .inbox import (
    InboxPage,
    InboxQuery,
    InboxSelection,
    MarkResult,
    decode_entry,
    inbox_row,
    merge_newest,
    need_fields,
    parse_inbox_query,
)
from .keys import EVENT_ID
from .openapi import openapi_json
from .outbox import Outbox
from .protocol import iso_ms
from .redis_client import REDIS_ERRORS
from .reports import (
    AbandonedReport,
    AbandonedRow,
    DeliveryItem,
    DeliveryPage,
    Period,
    QueryError,
    RowValues,
    SessionDetail,
    SessionPage,
    Summary,
)
from .runtime import Runtime
from .scripts import run_each
from .sites import Site

__all__ = [
    "SESSION_ID",
    "IndexMerge",
    "Reader",
    "dump",
    "routes",
]

log = logging.getLogger("chatlead.api")


SESSION_ID = re.compile(r"^[0-9a-f]{24}$")
CSV_CHUNK = 1000
PREFETCH = 3
"""Chunks of an export built ahead of the one being sent."""
EXPORT_BUFFER = 32_000
"""Rows an export holds in memory across all its sorted sets (pages read ahead included):
each set's page is this divided by the number of sets, within ``[100, 1000]``."""
SCAN = 5000
"""Most index entries one filtered page looks at (such a page may be short)."""
INBOX_CHUNK = 200
"""Inbox entries read per ``LRANGE`` (a page usually needs the first chunk only)."""
SESSION_KINDS = {None: "started", "open": "started", "completed": "completed"}
"""The report index a session list of each status walks (``abandoned`` walks its own)."""
MAX_EVENTS_PER_SESSION = 50

_ROW_LUA = """
-- Appends the 12 report strings of session `sid` to `out` after index `n`: the
-- SESSION_COLUMNS of its hash, the LEAD_COLUMNS of its fields hash, and the status
-- of the lead.abandoned event of its latest abandonment ('' when absent). Every
-- key read carries the shard tag, as in sweep.lua.
local function row(tag, sid, out, n)
  local key = tag .. 's:' .. sid
  local m = redis.call('HMGET', key, 'status', 'created', 'active', 'abandoned_at', 'step',
    'recovered', 'abandons')
  local f = redis.call('HMGET', key .. ':fields', 'name', 'email', 'phone', 'company')
  local delivery = false
  if m[7] then
    delivery = redis.call('HGET', tag .. 'e:evt_' .. sid .. '_abandoned_' .. m[7], 'status')
  end
  for j = 1, 7 do
    out[n + j] = m[j] or ''
  end
  for j = 1, 4 do
    out[n + 7 + j] = f[j] or ''
  end
  out[n + 12] = delivery or ''
  return n + 12
end
"""

ROWS_SCRIPT = (
    _ROW_LUA
    + """
-- Report rows of the given sessions of one shard (reads only).
-- KEYS: 1 any key of the shard (routes the call to its slot)
-- ARGV: 1 shard tag, 2 the session ids, comma-separated
-- Returns one JSON array of 12 strings per session: one JSON string and one
-- argument cost far less client-side than 12 replies and 2 arguments per row.
local tag, out, n = ARGV[1], {}, 0
for sid in string.gmatch(ARGV[2], '[^,]+') do
  n = row(tag, sid, out, n)
end
return cjson.encode(out)
"""
)

PAGE_SCRIPT = (
    _ROW_LUA
    + """
-- One page of a sorted set, highest score first, with the report row of each
-- member when a shard tag is given (reads only).
-- KEYS: 1 the sorted set; ARGV: 1 max score, 2 min score, 3 offset, 4 count,
--       5 shard tag of the members' keys, or '' for the page alone
-- Returns one JSON array: per entry its member, its score and, with a tag, the
-- 12 row strings (redis-py would otherwise build a list and a float per entry).
local page = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYSCORE', 'REV', 'LIMIT',
  ARGV[3], ARGV[4], 'WITHSCORES')
if ARGV[5] == '' then
  return cjson.encode(page)
end
local out, n = {}, 0
for i = 1, #page, 2 do
  out[n + 1] = page[i]
  out[n + 2] = page[i + 1]
  n = row(ARGV[5], page[i], out, n + 2)
end
return cjson.encode(out)
"""
)
_ROW_WIDTH = 12

_ADAPTERS: dict[type, TypeAdapter[Any]] = {
    t: TypeAdapter(t)
    for t in (
        AbandonedReport,
        DeliveryItem,
        DeliveryPage,
        InboxPage,
        MarkResult,
        SessionDetail,
        SessionPage,
        Summary,
    )
}
T = TypeVar("T")


def dump(value: Any) -> bytes:
    """JSON bytes of an API answer (dataclasses from :mod:`server.reports`)."""
    return _ADAPTERS[type(value)].dump_json(value, by_alias=True)


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except REDIS_ERRORS as exc:
        raise StoreError(f"Redis error: {exc}") from exc


# --- newest-first merge of sorted sets ---------------------------------------


def _bound(score: float) -> str:
    if score in (float("inf"), float("-inf")):
        return "+inf" if score > 0 else "-inf"
    return str(int(score))


Entry = tuple[int, str, str, list[str], int]
"""A merged entry: score, member, its source's label, and (with rows) the decoded
page holding its 12 row strings from the given offset."""


@dataclass
class _Source:
    key: str
    label: str
    high: float
    tag: str = ""
    skip: int = 0
    buffer: list[Entry] = field(default_factory=list)  # ascending
    done: bool = False
    ahead: asyncio.Task[Any] | None = None  # the next page, already asked for


class IndexMerge:
    """Entries of several sorted sets in one order: score, then member, descending.

    That is the order Redis uses inside one set (``ZREVRANGEBYSCORE``), so each
    set is read a page at a time, continuing from its last score and skipping
    the members of that score already taken. After each fetch, every buffered
    entry at or above the highest "last fetched" entry of the sets not yet
    exhausted is safe to hand out: nothing unread can outrank it. ``low``/``high``
    bound the scores (inclusive). Members are unique across the sets.

    With ``tags`` (the shard tag of each set's members), every page comes with
    the report row of each member, read in the same script call. With
    ``read_ahead``, each set's next page is asked for as soon as the previous one
    arrives, so Redis keeps working while Python formats (call :meth:`close`).
    """

    def __init__(
        self,
        redis: Any,
        sources: Sequence[tuple[str, str]],
        low: float,
        high: float,
        page: int,
        tags: Sequence[str] | None = None,
        *,
        read_ahead: bool = False,
    ) -> None:
        self.redis = redis
        self.low = low
        self.page = page
        self.read_ahead = read_ahead
        self._sources = [_Source(key, label, high) for key, label in sources]
        for source, tag in zip(self._sources, tags or (), strict=False):
            source.tag = tag
        self._page_script = redis.register_script(PAGE_SCRIPT)
        self._ready: list[Entry] = []
        self._taken = 0  # entries of _ready already handed out

    async def start_after(self, score: int, member: str) -> None:
        """Continue after ``(score, member)`` (a cursor)."""
        with _redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for source in self._sources:
                    pipe.zrangebyscore(source.key, score, score)
                ties = await pipe.execute()
        for source, members in zip(self._sources, ties, strict=True):
            source.high = min(source.high, score)
            if source.high == score:
                source.skip = sum(1 for m in members if m >= member)

    @property
    def exhausted(self) -> bool:
        return self._taken == len(self._ready) and all(
            s.done and not s.buffer for s in self._sources
        )

    def close(self) -> None:
        """Drop the pages asked for ahead (the reader stopped early)."""
        for source in self._sources:
            if source.ahead is not None:
                source.ahead.cancel()
                source.ahead = None

    async def _fetch(self, source: _Source) -> Any:
        call = (
            [source.key],
            [_bound(source.high), _bound(self.low), source.skip, self.page, source.tag],
        )
        with _redis_errors():
            return (await run_each(self.redis, self._page_script, [call]))[0]

    async def _refill(self) -> None:
        hungry = [s for s in self._sources if not s.buffer and not s.done]
        if not hungry:
            return
        for source in hungry:
            if source.ahead is None:
                source.ahead = asyncio.ensure_future(self._fetch(source))
        pages = await asyncio.gather(*(source.ahead for source in hungry if source.ahead))
        for source, reply in zip(hungry, pages, strict=True):
            source.ahead = None
            self._take_page(source, reply)
            if self.read_ahead and not source.done:
                source.ahead = asyncio.ensure_future(self._fetch(source))

    def _take_page(self, source: _Source, reply: str) -> None:
        flat: list[str] = json.loads(reply) if reply != "{}" else []  # cjson: {} is empty
        width = 2 + _ROW_WIDTH if source.tag else 2
        scores = map(int, map(float, flat[1::width]))
        offsets = range(2, len(flat) + 2, width)  # one per entry (the last may be empty)
        entries = list(zip(scores, flat[0::width], repeat(source.label), repeat(flat), offsets))
        source.done = len(entries) < self.page
        if not entries:
            return
        last = entries[-1][0]
        # descending, so the entries that share the last score close the page
        trailing = sum(1 for entry in entries if entry[0] == last)
        source.skip = source.skip + trailing if last == source.high else trailing
        source.high = last
        entries.reverse()
        source.buffer = entries

    def _release(self) -> None:
        """Move every entry that nothing unread can outrank to the ready queue."""
        heads = [s.buffer[0][:2] for s in self._sources if not s.done and s.buffer]
        bound = max(heads) if heads else None
        batch: list[Entry] = []
        for source in self._sources:
            cut = 0 if bound is None else bisect.bisect_left(source.buffer, bound)
            batch += source.buffer[cut:]
            del source.buffer[cut:]
        batch.sort(reverse=True)  # (score, member) decide: members are unique
        self._ready, self._taken = batch, 0

    async def take(self, count: int) -> list[Entry]:
        """The next ``count`` entries (fewer at the end)."""
        out: list[Entry] = []
        while len(out) < count:
            if self._taken == len(self._ready):
                await self._refill()
                if any(not s.buffer and not s.done for s in self._sources):
                    continue  # a set ran dry mid-way: read on before releasing anything
                self._release()
                if not self._ready:
                    break
            end = min(len(self._ready), self._taken + count - len(out))
            out += self._ready[self._taken : end]
            self._taken = end
        return out


async def _filtered_page(
    merge: IndexMerge,
    load: Callable[[Sequence[Entry]], Awaitable[list[T | None]]],
    keep: Callable[[T], bool] | None,
    limit: int,
) -> tuple[list[T], str | None]:
    """Up to ``limit`` loaded items of a merge that ``keep`` accepts, and the next cursor.

    With a filter a page looks at most at ``SCAN`` entries and may come back short
    (its cursor goes on from the last entry looked at).
    """
    items: list[T] = []
    last: Entry | None = None
    scanned, cut_short = 0, False
    while len(items) < limit and scanned < SCAN:
        entries = await merge.take(limit - len(items) if keep is None else limit)
        if not entries:
            break
        scanned += len(entries)
        for position, (entry, item) in enumerate(zip(entries, await load(entries), strict=True)):
            last = entry
            if item is not None and (keep is None or keep(item)):
                items.append(item)
                if len(items) == limit:
                    cut_short = position < len(entries) - 1
                    break
    more = last is not None and (cut_short or not merge.exhausted)
    return items, reports.encode_cursor(last[0], last[1]) if more and last else None


# --- reads ------------------------------------------------------------------


class Reader:
    """Every Redis read of the admin surface, pipelined, in the report shapes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.redis = runtime.store.redis
        self._rows_script = self.redis.register_script(ROWS_SCRIPT)

    async def now_ms(self) -> int:
        """Redis' clock, the one the session scripts use."""
        with _redis_errors():
            sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def sites(self, site_id: str | None) -> list[Site]:
        """The sites in scope.

        Raises:
            QueryError: ``site_id`` is not a configured site.
        """
        if not site_id:
            return list(self.runtime.sites.values())
        site = self.runtime.sites.get(site_id)
        if site is None:
            raise QueryError("site", f"no site {site_id!r}")
        return [site]

    async def summary(self, sites: Sequence[Site], period: Period) -> Summary:
        order = [
            (site.id, day, shard)
            for site in sites
            for day in period.days()
            for shard in range(self.store.shards)
        ]
        with _redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for site_id, day, shard in order:
                    pipe.hgetall(keys.site_stats(shard, site_id, day))
                hashes = await pipe.execute()
        counters = ((site, day, raw) for (site, day, _), raw in zip(order, hashes, strict=True))
        return reports.summarize(sites, period, counters)

    def _abandoned_index(
        self,
        sites: Sequence[Site],
        period: Period,
        page: int,
        *,
        rows: bool,
        read_ahead: bool = False,
    ) -> IndexMerge:
        pairs = [(site, shard) for site in sites for shard in range(self.store.shards)]
        sources = [(keys.site_index(shard, site.id, "abandoned"), site.id) for site, shard in pairs]
        tags = [keys.tag(shard) for _, shard in pairs] if rows else None
        low, high = period.since_ms, period.until_ms - 1
        return IndexMerge(self.redis, sources, low, high, page, tags, read_ahead=read_ahead)

    async def _rows(self, entries: Sequence[Entry]) -> list[AbandonedRow]:
        """Report rows for index entries: one ``ROWS_SCRIPT`` call per shard, pipelined."""
        by_shard: dict[int, list[int]] = {}
        for position, entry in enumerate(entries):
            by_shard.setdefault(self.store.shard(entry[1]), []).append(position)
        calls = [
            ([keys.deadlines(shard)], [keys.tag(shard), ",".join(entries[p][1] for p in positions)])
            for shard, positions in by_shard.items()
        ]
        with _redis_errors():
            replies = await run_each(self.redis, self._rows_script, calls)
        rows: list[AbandonedRow | None] = [None] * len(entries)
        for positions, reply in zip(by_shard.values(), replies, strict=True):
            values = json.loads(reply) if reply != "{}" else []  # cjson: empty table is {}
            for n, position in enumerate(positions):
                score, sid, site = entries[position][:3]
                rows[position] = reports.abandoned_row(sid, site, score, values, n * _ROW_WIDTH)
        return [r for r in rows if r is not None]

    async def abandoned_page(
        self, sites: Sequence[Site], period: Period, cursor: str | None, limit: int
    ) -> tuple[list[AbandonedRow], str | None]:
        """One page of abandoned sessions, newest first, and the next cursor.

        The index is merged first and only the page's rows are read.
        """
        after = reports.decode_cursor(cursor, SESSION_ID)
        merge = self._abandoned_index(sites, period, max(limit, 50), rows=False)
        if after:
            await merge.start_after(*after)
        rows: list[AbandonedRow] = []
        last: Entry | None = None
        while len(rows) < limit:
            entries = await merge.take(limit - len(rows))
            if not entries:
                break
            rows += await self._rows(entries)
            last = entries[-1]
        more = last is not None and not merge.exhausted
        return rows, reports.encode_cursor(last[0], last[1]) if more and last else None

    async def abandoned_chunks(
        self, sites: Sequence[Site], period: Period, chunk: int = CSV_CHUNK
    ) -> AsyncIterator[list[RowValues]]:
        """Every abandoned session of the period, newest first, ``chunk`` at a time,
        as plain column tuples (:data:`reports.RowValues`) for exports.

        Index pages come with their rows (one script call per set and page), and a
        producer task reads ahead while the caller formats, so Redis and Python
        work side by side.
        """
        sets = len(sites) * self.store.shards
        page = max(100, min(1000, EXPORT_BUFFER // (2 * sets)))  # a page in hand, one ahead
        merge = self._abandoned_index(sites, period, page, rows=True, read_ahead=True)
        ready: asyncio.Queue[list[RowValues] | None] = asyncio.Queue(PREFETCH)
        build = reports.row_values

        async def produce() -> None:
            while entries := await merge.take(chunk):
                built = (
                    build(sid, site, score, page, at) for score, sid, site, page, at in entries
                )
                await ready.put([row for row in built if row is not None])
            await ready.put(None)

        producer = asyncio.ensure_future(produce())
        try:
            while (rows := await ready.get()) is not None:
                yield rows
            await producer  # surfaces its error, if any
        finally:
            producer.cancel()
            merge.close()

    async def report(
        self, site_id: str | None, period: Period, cursor: str | None, limit: int
    ) -> AbandonedReport:
        sites = self.sites(site_id)
        rows, next_cursor = await self.abandoned_page(sites, period, cursor, limit)
        return AbandonedReport(
            site=site_id or None,
            since=iso_ms(period.since_ms),
            until=iso_ms(period.until_ms),
            items=rows,
            next_cursor=next_cursor,
            summary=await self.summary(sites, period),
        )

    # --- deliveries -----------------------------------------------------------

    async def _events(self, event_ids: Sequence[str]) -> list[DeliveryItem | None]:
        with _redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for eid in event_ids:
                    shard = self.store.shard(eid[4:28])
                    pipe.hgetall(keys.event(shard, eid))
                    pipe.lrange(keys.event_attempts(shard, eid), 0, -1)
                raw = await pipe.execute()
        return [
            reports.delivery_item(eid, raw[2 * i], raw[2 * i + 1])
            for i, eid in enumerate(event_ids)
        ]

    async def delivery(self, event_id: str) -> DeliveryItem | None:
        if not EVENT_ID.match(event_id):
            return None
        return (await self._events([event_id]))[0]

    async def deliveries(
        self, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[DeliveryItem], str | None]:
        """The delivery log, newest first; with ``status``, only events in that state."""
        after = reports.decode_cursor(cursor, EVENT_ID)
        sources = [(keys.deliveries(shard), "") for shard in range(self.store.shards)]
        merge = IndexMerge(self.redis, sources, float("-inf"), float("inf"), max(limit, 50))
        if after:
            await merge.start_after(*after)

        async def load(entries: Sequence[Entry]) -> list[DeliveryItem | None]:
            return await self._events([entry[1] for entry in entries])

        keep = (lambda item: item.status == status) if status else None
        return await _filtered_page(merge, load, keep, limit)

    async def sessions(
        self,
        site_id: str | None,
        period: Period,
        status: str | None,
        cursor: str | None,
        limit: int,
    ) -> SessionPage:
        """Sessions of the period, newest first; with ``status``, only those in it now.

        All sessions and open ones walk the ``started`` index, completed and abandoned
        ones their own (ordered by that moment); each page of an index comes with its
        rows (``PAGE_SCRIPT``).
        """
        after = reports.decode_cursor(cursor, SESSION_ID)
        kind = SESSION_KINDS.get(status, "abandoned")
        pairs = [
            (site, shard) for site in self.sites(site_id) for shard in range(self.store.shards)
        ]
        sources = [(keys.site_index(shard, site.id, kind), site.id) for site, shard in pairs]
        tags = [keys.tag(shard) for _, shard in pairs]
        low, high = period.since_ms, period.until_ms - 1
        merge = IndexMerge(self.redis, sources, low, high, max(limit, 50), tags)
        if after:
            await merge.start_after(*after)

        async def load(entries: Sequence[Entry]) -> list[reports.SessionRow | None]:
            return [
                reports.session_row(sid, site, score, page, at)
                for score, sid, site, page, at in entries
            ]

        keep = (lambda row: row.status == status) if status else None
        return SessionPage(*await _filtered_page(merge, load, keep, limit))

    # --- the inbox --------------------------------------------------------------

    async def inbox(self, query: InboxQuery, cursor: str | None, limit: int) -> InboxPage:
        """One page of the inbox (newest lead first), read a chunk at a time."""
        if cursor and not EVENT_ID.match(cursor):
            raise QueryError("cursor", "not a cursor returned by this API")
        needs = {
            site.id: need_fields([step.field for step in site.flow])
            for site in self.runtime.sites.values()
        }
        selection = InboxSelection(query, limit, cursor or None)
        async for entries in self._inbox_entries(query.kind):
            with _redis_errors():
                marks = (
                    await self.redis.zmscore(keys.INBOX_HANDLED, [e["id"] for e in entries])
                    if entries
                    else []
                )
            rows = (
                inbox_row(entry, needs.get(str(entry.get("site")), ("message",)), mark, SESSION_ID)
                for entry, mark in zip(entries, marks, strict=True)
            )
            selection.feed(row for row in rows if row is not None)
            if selection.done:
                break
        return selection.page()

    async def _inbox_entries(self, kind: str) -> AsyncIterator[list[dict[str, Any]]]:
        """Inbox entries newest first, a chunk at a time: real leads, test events or both."""
        tests: list[dict[str, Any]] = []
        if kind != "leads":
            with _redis_errors():
                raw_tests = await self.redis.lrange(keys.INBOX_TESTS, 0, -1)  # capped
            tests = [entry for entry in map(decode_entry, raw_tests) if entry is not None]
        if kind == "tests":
            yield tests
            return
        start = 0
        while True:
            with _redis_errors():
                raw = await self.redis.lrange(keys.INBOX, start, start + INBOX_CHUNK - 1)
            leads = [entry for entry in map(decode_entry, raw) if entry is not None]
            last = len(raw) < INBOX_CHUNK
            chunk, tests = merge_newest(leads, tests, last=last)
            yield chunk
            if last:
                return
            start += len(raw)

    async def mark(self, event_id: str, handled: bool) -> MarkResult | None:
        """Mark an inbox lead handled (or new again); None when there is no such event."""
        if not EVENT_ID.match(event_id):
            return None
        shard = self.store.shard(event_id[4:28])
        with _redis_errors():
            if not await self.redis.exists(keys.event(shard, event_id)):
                return None
            now = await self.now_ms()
            async with self.redis.pipeline(transaction=True) as pipe:
                if handled:
                    pipe.zadd(keys.INBOX_HANDLED, {event_id: now})
                else:
                    pipe.zrem(keys.INBOX_HANDLED, event_id)
                pipe.zremrangebyscore(keys.INBOX_HANDLED, "-inf", now - self.store.retention_ms)
                await pipe.execute()
        if handled:
            return MarkResult(event_id, "handled", iso_ms(now))
        return MarkResult(event_id, "new", None)

    async def session_deliveries(self, session_id: str, abandons: int) -> list[DeliveryItem]:
        candidates = [f"evt_{session_id}_completed"] + [
            f"evt_{session_id}_abandoned_{n}"
            for n in range(1, min(abandons, MAX_EVENTS_PER_SESSION) + 1)
        ]
        found = [item for item in await self._events(candidates) if item is not None]
        return sorted(found, key=lambda item: item.created_at)

    async def session(self, session_id: str) -> SessionDetail | None:
        if not SESSION_ID.match(session_id):
            return None
        record = await self.store.load_session(session_id)
        if record is None:
            return None
        with _redis_errors():
            abandons = await self.redis.hget(
                keys.session(self.store.shard(session_id), session_id), "abandons"
            )
        events = await self.session_deliveries(session_id, int(abandons or 0))
        return reports.session_detail(record, self.runtime.sites.get(record.site), events)


# --- routes -----------------------------------------------------------------


def _error(status: int, code: str, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


REFUSALS = {
    401: "unauthorized",
    403: "forbidden",
    429: "too_many_attempts",
    503: "store_unavailable",
}


def _refuse(request: Request, status: int, reason: str) -> Response:
    response = _error(status, REFUSALS[status], reason)
    if status == 401:
        response.headers["www-authenticate"] = 'Bearer realm="chatlead"'
    return response


NO_STORE = {"cache-control": "no-store"}
"""Answers carry personal data: no cache may keep a copy."""


def _json(value: Any, status: int = 200) -> Response:
    if isinstance(value, dict):
        return JSONResponse(value, status_code=status, headers=NO_STORE)
    return Response(
        dump(value), status_code=status, media_type="application/json", headers=NO_STORE
    )


def endpoint(fn: auth.Endpoint) -> auth.Endpoint:
    """Admin-only, and chatlead errors as JSON (400 bad query, 503 Redis down)."""

    guarded = auth.guard(_refuse)(fn)

    async def run(request: Request) -> Response:
        try:
            return await guarded(request)
        except QueryError as exc:
            status = 404 if exc.param == "site" else 400
            code = "unknown_site" if status == 404 else "bad_request"
            return _error(status, code, str(exc), param=exc.param)
        except StoreError as exc:
            log.warning("api_store_unavailable error=%s", exc)
            return _error(503, "store_unavailable", "Redis is unavailable; try again shortly")

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _period(request: Request, reader: Reader) -> Period:
    query = request.query_params
    return reports.parse_period(query.get("since"), query.get("until"), await reader.now_ms())


def _filename(site: str | None, period: Period) -> str:
    first, last = reports.day_iso(period.first_day), reports.day_iso(period.last_day)
    return f"abandoned-{site or 'all'}-{first}-to-{last}.csv"


def csv_response(reader: Reader, site_id: str | None, period: Period) -> Response:
    """The report as a streamed CSV download (UTF-8 with BOM, for spreadsheets)."""
    sites = reader.sites(site_id)

    async def body() -> AsyncIterator[bytes]:
        rows = reader.abandoned_chunks(sites, period)
        yield next(reports.csv_lines((), bom=True)).encode()
        try:
            async for chunk in rows:
                yield "".join(reports.csv_lines([chunk], header=False)).encode()
        except StoreError as exc:  # headers are sent: all we can do is stop short
            log.warning("csv_export_interrupted error=%s", exc)

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{_filename(site_id, period)}"',
            **NO_STORE,
        },
    )


@endpoint
async def abandoned_report(request: Request) -> Response:
    """``GET /api/reports/abandoned?site=&since=&until=&format=json|csv&cursor=&limit=``."""
    reader = Reader(_runtime(request))
    query = request.query_params
    form = query.get("format") or "json"
    if form not in ("json", "csv"):
        raise QueryError("format", "must be json or csv")
    site_id = query.get("site") or None
    period = await _period(request, reader)
    if form == "csv":
        return csv_response(reader, site_id, period)
    limit = reports.parse_limit(query.get("limit"))
    return _json(await reader.report(site_id, period, query.get("cursor"), limit))


@endpoint
async def summary_report(request: Request) -> Response:
    """``GET /api/reports/summary?site=&since=&until=``: totals, drop-off and per-day counts."""
    reader = Reader(_runtime(request))
    sites = reader.sites(request.query_params.get("site") or None)
    return _json(await reader.summary(sites, await _period(request, reader)))


SESSION_STATUSES = (None, "open", "completed", "abandoned")


def session_status(text: str | None) -> str | None:
    """The ``status`` filter of a session list.

    Raises:
        QueryError: not open, completed or abandoned.
    """
    status = text or None
    if status not in SESSION_STATUSES:
        raise QueryError("status", "must be open, completed or abandoned")
    return status


@endpoint
async def list_sessions(request: Request) -> Response:
    """``GET /api/sessions?site=&status=&since=&until=&cursor=&limit=``."""
    reader = Reader(_runtime(request))
    query = request.query_params
    status = session_status(query.get("status"))
    period = await _period(request, reader)
    limit = reports.parse_limit(query.get("limit"), default=50)
    page = await reader.sessions(
        query.get("site") or None, period, status, query.get("cursor"), limit
    )
    return _json(page)


@endpoint
async def list_inbox(request: Request) -> Response:
    """``GET /api/inbox?status=new|handled&kind=leads|tests|all&q=&cursor=&limit=``."""
    query = request.query_params
    wanted = parse_inbox_query(query.get("status"), query.get("kind"), query.get("q"))
    limit = reports.parse_limit(query.get("limit"), default=50)
    return _json(await Reader(_runtime(request)).inbox(wanted, query.get("cursor"), limit))


@endpoint
async def mark_inbox(request: Request) -> Response:
    """``POST /api/inbox/{id}/handled`` marks a lead handled; ``DELETE`` makes it new again."""
    reader = Reader(_runtime(request))
    result = await reader.mark(request.path_params["event_id"], request.method == "POST")
    if result is None:
        return _error(404, "not_found", "no such lead")
    return _json(result)


@endpoint
async def get_session(request: Request) -> Response:
    """``GET /api/sessions/{id}``: transcript, fields, lead and its delivery events."""
    detail = await Reader(_runtime(request)).session(request.path_params["session_id"])
    if detail is None:
        return _error(404, "not_found", "no such session")
    return _json(detail)


@endpoint
async def delete_session(request: Request) -> Response:
    """``DELETE /api/sessions/{id}``: erase the session's personal data everywhere."""
    session_id = request.path_params["session_id"]
    if not SESSION_ID.match(session_id):
        return _error(404, "not_found", "no such session")
    result = await erase_session(_runtime(request), session_id)
    if not result.found:
        return _error(404, "not_found", "no such session")
    return _json(result.as_dict())


@endpoint
async def list_deliveries(request: Request) -> Response:
    """``GET /api/deliveries?status=pending|delivered|dead&cursor=&limit=``."""
    query = request.query_params
    status = query.get("status") or None
    if status not in (None, "pending", "delivered", "dead"):
        raise QueryError("status", "must be pending, delivered or dead")
    limit = reports.parse_limit(query.get("limit"), default=50)
    items, cursor = await Reader(_runtime(request)).deliveries(status, query.get("cursor"), limit)
    return _json(DeliveryPage(items, cursor))


@endpoint
async def get_delivery(request: Request) -> Response:
    item = await Reader(_runtime(request)).delivery(request.path_params["event_id"])
    if item is None:
        return _error(404, "not_found", "no such delivery")
    return _json(item)


async def replay(runtime: Runtime, event_id: str) -> str:
    """Queue an event again: ``ok`` | ``pending`` (already queued) | ``missing``."""
    if not EVENT_ID.match(event_id):
        return "missing"
    with _redis_errors():
        outcome = await Outbox(runtime.store).replay(event_id)
    if outcome == "ok":
        runtime.delivery_wakeup.set()
    return outcome


@endpoint
async def replay_delivery(request: Request) -> Response:
    """``POST /api/deliveries/{id}/replay``: send a delivered or dead event again."""
    runtime = _runtime(request)
    event_id = request.path_params["event_id"]
    outcome = await replay(runtime, event_id)
    if outcome == "missing":
        return _error(404, "not_found", "no such delivery")
    if outcome == "pending":
        return _error(409, "already_pending", "this event is already waiting for delivery")
    item = await Reader(runtime).delivery(event_id)
    return _json(item if item is not None else {"id": event_id}, status=202)


async def send_test_event(runtime: Runtime, site_id: str) -> str:
    """Queue a signed sample lead for ``site_id`` and wake the delivery loop."""
    with _redis_errors():
        event_id = await Outbox(runtime.store).add_test_event(site_id)
    runtime.delivery_wakeup.set()
    return event_id


@endpoint
async def test_event(request: Request) -> Response:
    """``POST /api/sites/{site}/test-event``."""
    runtime = _runtime(request)
    site_id = request.path_params["site"]
    if site_id not in runtime.sites:
        raise QueryError("site", f"no site {site_id!r}")
    event_id = await send_test_event(runtime, site_id)
    item = await Reader(runtime).delivery(event_id)
    return _json(item if item is not None else {"id": event_id}, status=202)


routes: list[BaseRoute] = [
    Route("/api/reports/abandoned", abandoned_report, methods=["GET"]),
    Route("/api/reports/summary", summary_report, methods=["GET"]),
    Route("/api/sessions", list_sessions, methods=["GET"]),
    Route("/api/sessions/{session_id}", get_session, methods=["GET"]),
    Route("/api/sessions/{session_id}", delete_session, methods=["DELETE"]),
    Route("/api/deliveries", list_deliveries, methods=["GET"]),
    Route("/api/deliveries/{event_id}", get_delivery, methods=["GET"]),
    Route("/api/deliveries/{event_id}/replay", replay_delivery, methods=["POST"]),
    Route("/api/sites/{site}/test-event", test_event, methods=["POST"]),
    Route("/api/inbox", list_inbox, methods=["GET"]),
    Route("/api/inbox/{event_id}/handled", mark_inbox, methods=["POST", "DELETE"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]
