"""A newest-first merge of sorted sets, read a page of each at a time.

Report indexes are one sorted set per shard and site, so a page of a report is a
merge of those sets: the first page costs the same with 100 or 100,000 rows, and
an export streams in constant memory. Pages come from ``lua/report_page.lua``.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, TypeVar

from ..redis_client import Translated
from ..scripts import run_each
from ..store import Store
from .params import encode_cursor
from .rows import ROW_WIDTH

__all__ = ["SCAN", "Entry", "IndexMerge", "filtered_page"]

SCAN = 5000
"""Most index entries one filtered page looks at (such a page may be short)."""
T = TypeVar("T")
_READING = Translated("reading a report index")


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
        store: Store,
        sources: Sequence[tuple[str, str]],
        low: float,
        high: float,
        page: int,
        tags: Sequence[str] | None = None,
        *,
        read_ahead: bool = False,
    ) -> None:
        self.redis = store.redis
        self._page_script = store.script("report_page")
        self.low = low
        self.page = page
        self.read_ahead = read_ahead
        self._sources = [_Source(key, label, high) for key, label in sources]
        for source, tag in zip(self._sources, tags or (), strict=False):
            source.tag = tag
        self._ready: list[Entry] = []
        self._taken = 0  # entries of _ready already handed out

    async def start_after(self, score: int, member: str) -> None:
        """Continue after ``(score, member)`` (a cursor)."""
        with _READING:
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
        with _READING:
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
        width = 2 + ROW_WIDTH if source.tag else 2
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


async def filtered_page(
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
    return items, encode_cursor(last[0], last[1]) if more and last else None
