"""Every Redis read of the admin surface, in the shapes of the report modules.

:class:`Reader` fetches raw data with pipelined Redis commands and report scripts
(``lua/report_rows.lua``, ``lua/report_page.lua``) and hands it to the pure
functions of :mod:`.rows`, :mod:`.summary`, :mod:`.deliveries`,
:mod:`.session_detail` and :mod:`.inbox`; the API, the admin pages and the CLI all
go through it, so they always show the same numbers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .. import keys
from ..keys import EVENT_ID
from ..outbox import decode_entry
from ..protocol import iso_ms
from ..redis_client import Translated
from ..runtime import Runtime
from ..scripts import run_each
from ..sites import Site
from .deliveries import DeliveryItem, delivery_item
from .experiment_report import ExperimentReport, experiment_report
from .health import DestinationHealth, destination_health, site_destinations
from .inbox import (
    InboxPage,
    InboxQuery,
    InboxSelection,
    MarkResult,
    inbox_row,
    merge_newest,
    need_fields,
)
from .index_merge import Entry, IndexMerge, filtered_page
from .params import SESSION_ID, Period, QueryError, decode_cursor, encode_cursor
from .recovery_report import RECOVERY_FIELDS, RecoveryReport, recovered_session, recovery_report
from .rows import (
    ROW_WIDTH,
    AbandonedReport,
    AbandonedRow,
    RowValues,
    SessionPage,
    SessionRow,
    abandoned_row,
    row_values,
    session_row,
)
from .session_detail import SessionDetail, earlier_sessions, session_detail
from .summary import Summary, summarize

__all__ = ["Reader"]

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
SESSION_KINDS = {None: "started", "open": "started", "completed": "completed", "spam": "spam"}
"""The report index a session list of each status walks (``abandoned`` walks its own;
``spam``: the sessions held back as spam, §12, until released)."""
MAX_EVENTS_PER_SESSION = 50
_READING = Translated("reading the admin data")


class Reader:
    """Every Redis read of the admin surface, pipelined, in the report shapes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.redis = runtime.store.redis
        self._rows_script = runtime.store.script("report_rows")

    async def now_ms(self) -> int:
        """Redis' clock, the one the session scripts use."""
        return await self.store.now_ms()

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

    async def _counters(
        self, sites: Sequence[Site], period: Period
    ) -> list[tuple[str, int, dict[str, str]]]:
        """``(site, day, counter hash)`` of every shard for the days ``period`` touches."""
        order = [
            (site.id, day, shard)
            for site in sites
            for day in period.days()
            for shard in range(self.store.shards)
        ]
        with _READING:
            async with self.redis.pipeline(transaction=False) as pipe:
                for site_id, day, shard in order:
                    pipe.hgetall(keys.site_stats(shard, site_id, day))
                hashes = await pipe.execute()
        return [(site, day, raw) for (site, day, _), raw in zip(order, hashes, strict=True)]

    async def summary(self, sites: Sequence[Site], period: Period) -> Summary:
        return summarize(sites, period, await self._counters(sites, period))

    async def experiments(self, sites: Sequence[Site], period: Period) -> ExperimentReport:
        """``/api/reports/experiments``: the sites among ``sites`` that run one."""
        running = [site for site in sites if site.variants]
        return experiment_report(running, period, await self._counters(running, period))

    async def recovery(self, sites: Sequence[Site], period: Period) -> RecoveryReport:
        """``/api/reports/recovery``: the counters, and every session recovered in the
        period read from the ``recovered`` index (two pipelined round trips)."""
        pairs = [(site, shard) for site in sites for shard in range(self.store.shards)]
        with _READING:
            async with self.redis.pipeline(transaction=False) as pipe:
                for site, shard in pairs:
                    index = keys.site_index(shard, site.id, "recovered")
                    pipe.zrangebyscore(index, period.since_ms, period.until_ms - 1)
                found = await pipe.execute()
            ids = [
                (shard, sid) for (_, shard), sids in zip(pairs, found, strict=True) for sid in sids
            ]
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard, sid in ids:
                    pipe.hmget(keys.session(shard, sid), *RECOVERY_FIELDS)
                rows = await pipe.execute()
        back = [recovered_session(sid, row) for (_, sid), row in zip(ids, rows, strict=True)]
        sessions = [row for row in back if row is not None]
        return recovery_report(sites, period, await self._counters(sites, period), sessions)

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
        return IndexMerge(self.store, sources, low, high, page, tags, read_ahead=read_ahead)

    async def _rows(self, entries: Sequence[Entry]) -> list[AbandonedRow]:
        """Report rows for index entries: one ``report_rows.lua`` call per shard, pipelined."""
        by_shard: dict[int, list[int]] = {}
        for position, entry in enumerate(entries):
            by_shard.setdefault(self.store.shard(entry[1]), []).append(position)
        calls = [
            ([keys.deadlines(shard)], [keys.tag(shard), ",".join(entries[p][1] for p in positions)])
            for shard, positions in by_shard.items()
        ]
        with _READING:
            replies = await run_each(self.redis, self._rows_script, calls)
        link = await self.runtime.links.maker()
        rows: list[AbandonedRow | None] = [None] * len(entries)
        for positions, reply in zip(by_shard.values(), replies, strict=True):
            values = json.loads(reply) if reply != "{}" else []  # cjson: empty table is {}
            for n, position in enumerate(positions):
                score, sid, site = entries[position][:3]
                rows[position] = abandoned_row(sid, site, score, values, n * ROW_WIDTH, link)
        return [r for r in rows if r is not None]

    async def abandoned_page(
        self, sites: Sequence[Site], period: Period, cursor: str | None, limit: int
    ) -> tuple[list[AbandonedRow], str | None]:
        """One page of abandoned sessions, newest first, and the next cursor.

        The index is merged first and only the page's rows are read.
        """
        after = decode_cursor(cursor, SESSION_ID)
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
        return rows, encode_cursor(last[0], last[1]) if more and last else None

    async def abandoned_chunks(
        self, sites: Sequence[Site], period: Period, chunk: int = CSV_CHUNK
    ) -> AsyncIterator[list[RowValues]]:
        """Every abandoned session of the period, newest first, ``chunk`` at a time,
        as plain column tuples (:data:`.rows.RowValues`) for exports.

        Index pages come with their rows (one script call per set and page), and a
        producer task reads ahead while the caller formats, so Redis and Python
        work side by side.
        """
        sets = len(sites) * self.store.shards
        page = max(100, min(1000, EXPORT_BUFFER // (2 * sets)))  # a page in hand, one ahead
        merge = self._abandoned_index(sites, period, page, rows=True, read_ahead=True)
        ready: asyncio.Queue[list[RowValues] | None] = asyncio.Queue(PREFETCH)
        build, link = row_values, await self.runtime.links.maker()

        async def produce() -> None:
            while entries := await merge.take(chunk):
                built = (
                    build(sid, site, score, page, at, link)
                    for score, sid, site, page, at in entries
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
        with _READING:
            async with self.redis.pipeline(transaction=False) as pipe:
                for eid in event_ids:
                    shard = self.store.shard(eid[4:28])
                    pipe.hgetall(keys.event(shard, eid))
                    pipe.lrange(keys.event_attempts(shard, eid), 0, -1)
                raw = await pipe.execute()
        return [delivery_item(eid, raw[2 * i], raw[2 * i + 1]) for i, eid in enumerate(event_ids)]

    async def delivery(self, event_id: str) -> DeliveryItem | None:
        if not EVENT_ID.match(event_id):
            return None
        return (await self._events([event_id]))[0]

    async def deliveries(
        self, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[DeliveryItem], str | None]:
        """The delivery log, newest first; with ``status``, only events in that state."""
        after = decode_cursor(cursor, EVENT_ID)
        sources = [(keys.deliveries(shard), "") for shard in range(self.store.shards)]
        merge = IndexMerge(self.store, sources, float("-inf"), float("inf"), max(limit, 50))
        if after:
            await merge.start_after(*after)

        async def load(entries: Sequence[Entry]) -> list[DeliveryItem | None]:
            return await self._events([entry[1] for entry in entries])

        keep = (lambda item: item.status == status) if status else None
        return await filtered_page(merge, load, keep, limit)

    async def destination_health(
        self, sites: Sequence[Site], now_ms: int
    ) -> list[DestinationHealth]:
        """Every destination of ``sites`` (REST hooks included) at a glance: each shard's
        share of its health read in one pipeline, added up by :mod:`.health`."""
        wanted = [
            (site.id, destination)
            for site in sites
            for destination in site_destinations(site, self.runtime.hooks.current)
        ]
        since_hour = f"({now_ms - keys.HEALTH_WINDOW_MS}"
        since_kept = f"({now_ms - self.store.retention_ms}"
        shards = range(self.store.shards)
        with _READING:
            async with self.redis.pipeline(transaction=False) as pipe:
                for site_id, destination in wanted:
                    for shard in shards:
                        name = destination.name
                        pipe.hgetall(keys.destination_health(shard, site_id, name))
                        failures = keys.destination_failures(shard, site_id, name)
                        pipe.zcount(failures, since_hour, "+inf")
                        pipe.zcount(keys.destination_dead(shard, site_id, name), since_kept, "+inf")
                raw = await pipe.execute()
        shares = [(raw[i], int(raw[i + 1]), int(raw[i + 2])) for i in range(0, len(raw), 3)]
        per = self.store.shards
        return [
            destination_health(site_id, destination, shares[n * per : (n + 1) * per])
            for n, (site_id, destination) in enumerate(wanted)
        ]

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
        rows (``report_page.lua``).
        """
        after = decode_cursor(cursor, SESSION_ID)
        kind = SESSION_KINDS.get(status, "abandoned")
        pairs = [
            (site, shard) for site in self.sites(site_id) for shard in range(self.store.shards)
        ]
        sources = [(keys.site_index(shard, site.id, kind), site.id) for site, shard in pairs]
        tags = [keys.tag(shard) for _, shard in pairs]
        low, high = period.since_ms, period.until_ms - 1
        merge = IndexMerge(self.store, sources, low, high, max(limit, 50), tags)
        if after:
            await merge.start_after(*after)

        async def load(entries: Sequence[Entry]) -> list[SessionRow | None]:
            return [
                session_row(sid, site, score, page, at) for score, sid, site, page, at in entries
            ]

        keep = (lambda row: row.status == status) if status and status != "spam" else None
        return SessionPage(*await filtered_page(merge, load, keep, limit))

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
            with _READING:
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
            with _READING:
                raw_tests = await self.redis.lrange(keys.INBOX_TESTS, 0, -1)  # capped
            tests = [entry for entry in map(decode_entry, raw_tests) if entry is not None]
        if kind == "tests":
            yield tests
            return
        start = 0
        while True:
            with _READING:
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
        with _READING:
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

    async def _session_deliveries(self, session_id: str, abandons: int) -> list[DeliveryItem]:
        candidates = [keys.completed_event(session_id)] + [
            keys.abandoned_event(session_id, n)
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
        with _READING:
            abandons = await self.redis.hget(
                keys.session(self.store.shard(session_id), session_id), "abandons"
            )
        events = await self._session_deliveries(session_id, int(abandons or 0))
        link = await self.runtime.links.shown(record)
        site = self.runtime.sites.get(record.site)
        shown = site.for_session(record.page) if site else None
        earlier = []
        if record.identified:
            rows = await self.store.user_sessions(record.site, record.user_id, record.id)
            earlier = earlier_sessions(rows)
        return session_detail(record, shown, events, link, earlier)
