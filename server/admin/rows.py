"""Report rows (pure): the abandoned-lead report and the session list.

A row is built from the 12 strings the report scripts return per session
(``lua/_report_row.lua``): seven fields of the session hash, four captured fields
and the state of its ``lead.abandoned`` event. Rows are exact to the millisecond.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from .params import iso_ms
from .summary import Summary

__all__ = [
    "ROW_WIDTH",
    "AbandonedReport",
    "AbandonedRow",
    "LinkMaker",
    "RowValues",
    "SessionPage",
    "SessionRow",
    "abandoned_row",
    "row_values",
    "session_row",
]

ROW_WIDTH = 12
"""Strings per session in a report script's reply."""

DeliveryState = Literal["pending", "delivered", "dead", "none"]


@dataclass(frozen=True, slots=True)
class AbandonedRow:
    """One abandoned session. Times are ISO-8601 UTC; absent fields are null."""

    session_id: str
    site: str
    status: Literal["open", "completed", "abandoned"]
    started_at: str
    last_activity_at: str
    abandoned_at: str
    step: str
    name: str | None
    email: str | None
    phone: str | None
    company: str | None
    contactable: bool
    recovered: bool
    delivery: DeliveryState
    resume_url: str | None = None
    """The visitor's resume link (§11), until it expires; none once completed."""


_STATUSES = frozenset({"open", "completed", "abandoned"})
_DELIVERED = frozenset({"pending", "delivered", "dead"})


def _ms(value: str, fallback: int) -> int:
    try:
        return int(value)
    except ValueError:
        return fallback


RowValues = tuple[
    str,
    str,
    str,
    str,
    str,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    bool,
    bool,
    str,
    str | None,
]
"""The 15 columns of a report row, in ``CSV_HEADER`` order (a CSV export skips the objects)."""

LinkMaker = Callable[[str, int], str | None]
"""A session's resume link from its id and abandonment time (ms), or None."""


def row_values(
    session_id: str,
    site: str,
    indexed_ms: int,
    values: Sequence[str],
    at: int = 0,
    link: LinkMaker | None = None,
) -> RowValues | None:
    """A report row from the 12 strings at ``values[at:]``: ``SESSION_COLUMNS``,
    ``LEAD_COLUMNS``, then the delivery state ('' for missing values); ``link`` makes
    the resume link of a session not completed.

    Returns None when the session is gone (expired or erased).
    """
    status = values[at]
    if status not in _STATUSES:
        return None
    started = _ms(values[at + 1], indexed_ms)
    email, phone = values[at + 8] or None, values[at + 9] or None
    delivery = values[at + 11]
    abandoned = _ms(values[at + 3], indexed_ms)
    resume = link(session_id, abandoned) if link and status != "completed" else None
    return (
        session_id,
        site,
        status,
        iso_ms(started),
        iso_ms(_ms(values[at + 2], started)),
        iso_ms(abandoned),
        values[at + 4],
        values[at + 7] or None,
        email,
        phone,
        values[at + 10] or None,
        bool(email or phone),
        # it came back after this abandonment (and has not idled out again)
        values[at + 5] == "1" and status != "abandoned",
        delivery if delivery in _DELIVERED else "none",
        resume,
    )


def abandoned_row(
    session_id: str,
    site: str,
    indexed_ms: int,
    values: Sequence[str],
    at: int = 0,
    link: LinkMaker | None = None,
) -> AbandonedRow | None:
    """:func:`row_values` as an :class:`AbandonedRow` (what the JSON answer holds)."""
    row = row_values(session_id, site, indexed_ms, values, at, link)
    return AbandonedRow(*row) if row is not None else None  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session in the session list (any status). Times are ISO-8601 UTC."""

    session_id: str
    site: str
    status: Literal["open", "completed", "abandoned"]
    started_at: str
    last_activity_at: str
    step: str
    name: str | None
    email: str | None
    phone: str | None
    company: str | None
    recovered: bool


def session_row(
    session_id: str, site: str, indexed_ms: int, values: Sequence[str], at: int = 0
) -> SessionRow | None:
    """A session-list row from the same 12 strings as :func:`row_values`; None when gone."""
    row = row_values(session_id, site, indexed_ms, values, at)
    if row is None:
        return None
    return SessionRow(
        session_id,
        site,
        row[2],  # type: ignore[arg-type]
        row[3],
        row[4],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        values[at + 5] == "1",
    )


@dataclass(frozen=True, slots=True)
class AbandonedReport:
    """One page of ``/api/reports/abandoned`` (newest abandonment first)."""

    site: str | None
    since: str
    until: str
    items: list[AbandonedRow]
    next_cursor: str | None
    summary: Summary


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of ``/api/sessions`` (newest first)."""

    items: list[SessionRow]
    next_cursor: str | None
