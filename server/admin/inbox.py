"""What the built-in inbox shows (pure): one row per lead, status, search and paging.

The inbox is a Redis list of delivered leads (``{"id", "type", "site", "data", "at"}``,
newest first, kept for the retention), a short list of test events apart from it
(capped, so no flood of test events can push a real lead out; see
:meth:`..outbox.Outbox.push_inbox`), and a sorted
set of the event ids an owner marked handled. The admin API reads the list a chunk
at a time and feeds it to an :class:`InboxSelection`, which keeps the newest entry
of each session (a lead abandoned and later completed is one lead), filters it and
stops as soon as a page and the knowledge of one more row are in hand.

A mark belongs to an event id: when a handled lead comes back (completed after an
abandonment) its newer event is new again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..outbox import entry_ms
from .params import QueryError, iso_ms

__all__ = [
    "CONTACT_FIELDS",
    "InboxPage",
    "InboxQuery",
    "InboxRow",
    "InboxSelection",
    "MarkResult",
    "inbox_row",
    "merge_newest",
    "need_fields",
    "parse_inbox_query",
]

CONTACT_FIELDS = ("name", "email", "phone", "company")
"""Lead fields shown in their own columns; the other asked fields say what the visitor needs."""
MAX_QUERY = 100
Kind = Literal["leads", "tests", "all"]
Status = Literal["new", "handled"]


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One lead in the inbox. ``session_id`` is null for test events."""

    id: str
    event: str
    site: str
    session_id: str | None
    test: bool
    name: str | None
    email: str | None
    phone: str | None
    company: str | None
    need: str | None
    messages: int
    last_message_at: str | None
    status: Status
    handled_at: str | None


@dataclass(frozen=True, slots=True)
class InboxPage:
    items: list[InboxRow]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class MarkResult:
    """The answer to marking an inbox lead handled or new."""

    id: str
    status: Status
    handled_at: str | None


def need_fields(flow_fields: Sequence[str]) -> tuple[str, ...]:
    """The asked fields that say what a visitor needs (every non-contact step)."""
    return tuple(name for name in flow_fields if name not in CONTACT_FIELDS) or ("message",)


def merge_newest(
    leads: Sequence[dict[str, Any]], tests: Sequence[dict[str, Any]], *, last: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A chunk of leads merged with the test events newer than its oldest lead.

    Both inputs are newest first. Returns the merged chunk and the test events left
    for later chunks (all of them go with the ``last`` chunk).
    """
    floor = entry_ms(leads[-1]) if leads and not last else -1
    merged: list[dict[str, Any]] = list(leads)
    rest: list[dict[str, Any]] = []
    for test in tests:
        (merged if entry_ms(test) > floor else rest).append(test)
    merged.sort(key=entry_ms, reverse=True)  # stable: equal times keep list order
    return merged, rest


def _fields(lead: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in lead.get("fields") or ():
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            value = entry.get("value")
            if isinstance(value, str) and value:
                out[entry["name"]] = value
    return out


def inbox_row(
    item: Mapping[str, Any],
    needs: Sequence[str],
    handled_ms: float | None,
    session_pattern: re.Pattern[str],
) -> InboxRow | None:
    """The row of one inbox payload; None when it is not one we wrote.

    Args:
        item: the decoded list entry.
        needs: the site's :func:`need_fields`.
        handled_ms: when the event was marked handled, if it was.
        session_pattern: a compiled pattern a real session id matches (links are built
            from it, so a payload can never smuggle a path).
    """
    event_id = item.get("id")
    data = item.get("data")
    if not isinstance(event_id, str) or not isinstance(data, dict):
        return None
    kind = str(item.get("type", ""))
    fields = _fields(data)
    transcript = [m for m in data.get("transcript") or () if isinstance(m, dict)]
    session_id = data.get("sessionId")
    test = kind == "lead.test"
    real_session = not test and isinstance(session_id, str) and session_pattern.match(session_id)
    need = " · ".join(fields[name] for name in needs if name in fields)
    return InboxRow(
        id=event_id,
        event=kind.removeprefix("lead."),
        site=str(item.get("site", "")),
        session_id=str(session_id) if real_session else None,
        test=test,
        name=fields.get("name"),
        email=fields.get("email"),
        phone=fields.get("phone"),
        company=fields.get("company") or _text(data.get("company")),
        need=need or None,
        messages=len(transcript),
        last_message_at=_text(transcript[-1].get("createdTime")) if transcript else None,
        status="handled" if handled_ms is not None else "new",
        handled_at=iso_ms(int(handled_ms)) if handled_ms is not None else None,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class InboxQuery:
    """Which inbox rows to show: status, real leads or test events, and a search."""

    status: Status | None = None
    kind: Kind = "leads"
    search: str = ""

    def matches(self, row: InboxRow) -> bool:
        if self.kind != "all" and row.test != (self.kind == "tests"):
            return False
        if self.status is not None and row.status != self.status:
            return False
        if not self.search:
            return True
        needle = self.search.casefold()
        haystack = (row.name, row.email, row.phone, row.company, row.need, row.site)
        return any(needle in text.casefold() for text in haystack if text)


def parse_inbox_query(status: str | None, kind: str | None, search: str | None) -> InboxQuery:
    """The query from ``status``, ``kind`` and ``q`` parameters (all optional).

    Raises:
        QueryError: a value the inbox does not know, or a search longer than 100.
    """
    if status not in (None, "", "new", "handled"):
        raise QueryError("status", "must be new or handled")
    if kind not in (None, "", "leads", "tests", "all"):
        raise QueryError("kind", "must be leads, tests or all")
    text = (search or "").strip()
    if len(text) > MAX_QUERY:
        raise QueryError("q", f"may be at most {MAX_QUERY} characters")
    return InboxQuery(status or None, kind or "leads", text)  # type: ignore[arg-type]


@dataclass
class InboxSelection:
    """One page of the inbox, chosen from rows fed newest first (a small state machine).

    ``after`` is the id of the last row of the previous page (the cursor): rows up to
    it are only remembered, so each session still shows once across pages.
    """

    query: InboxQuery
    limit: int
    after: str | None = None
    items: list[InboxRow] = field(default_factory=list)
    more: bool = False
    _seen: set[str] = field(default_factory=set)

    @property
    def done(self) -> bool:
        """A full page and proof of one more row: nothing further needs reading."""
        return self.more

    def feed(self, rows: Iterable[InboxRow]) -> None:
        for row in rows:
            lead = row.session_id or row.id
            if lead in self._seen:
                continue  # an older event of a lead already shown
            self._seen.add(lead)
            if self.after is not None:
                if row.id == self.after:
                    self.after = None
                continue
            if not self.query.matches(row):
                continue
            if len(self.items) == self.limit:
                self.more = True
                return
            self.items.append(row)

    def page(self) -> InboxPage:
        return InboxPage(self.items, self.items[-1].id if self.more else None)
