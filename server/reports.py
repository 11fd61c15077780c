"""What operators read: the abandoned-lead report, its summary, the delivery log (pure).

Everything here turns raw Redis replies (hash fields, counter hashes, list
entries) into typed rows and totals, with no I/O; the HTTP API, the admin pages
and the CLI fetch the raw data and render what these functions return, so the
three always show the same numbers.

Periods are ``[since, until)`` in milliseconds (UTC). Rows are exact to the
millisecond; the summary is built from the per-day counters the session scripts
keep (``stats:<site>:<day>``), so it covers the whole UTC days the period
touches (``summary.first_day`` .. ``summary.last_day``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from .errors import ChatleadError
from .lead import build_lead
from .session import SessionRecord, SessionStatus
from .sites import Site

__all__ = [
    "CSV_HEADER",
    "DAY_MS",
    "SESSION_COLUMNS",
    "AbandonedReport",
    "AbandonedRow",
    "DayCount",
    "DeliveryAttempt",
    "DeliveryItem",
    "DeliveryPage",
    "Period",
    "SessionDetail",
    "SessionPage",
    "SessionRow",
    "QueryError",
    "RowValues",
    "SiteSummary",
    "StepDropOff",
    "Summary",
    "TranscriptEntry",
    "abandoned_event_id",
    "abandoned_row",
    "csv_lines",
    "csv_record",
    "day_iso",
    "decode_cursor",
    "delivery_item",
    "encode_cursor",
    "iso_ms",
    "parse_limit",
    "parse_period",
    "row_values",
    "safe_cell",
    "session_detail",
    "session_row",
    "summarize",
]

DAY_MS = 86_400_000
DEFAULT_DAYS = 30
MAX_DAYS = 400
MAX_LIMIT = 1000

DeliveryState = Literal["pending", "delivered", "dead", "none"]


class QueryError(ChatleadError):
    """A query parameter the API cannot use (HTTP 400, names the parameter)."""

    code = "bad_request"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


# --- periods ----------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d{1,6})(m|h|d|w)$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_HINT = (
    "expected an ISO-8601 date or time (2024-05-01, 2024-05-01T09:30:00Z) "
    "or a relative time such as 24h or 7d"
)


@dataclass(frozen=True, slots=True)
class Period:
    """``[since_ms, until_ms)``, UTC milliseconds."""

    since_ms: int
    until_ms: int

    @property
    def first_day(self) -> int:
        return self.since_ms // DAY_MS

    @property
    def last_day(self) -> int:
        return (self.until_ms - 1) // DAY_MS

    def days(self) -> range:
        return range(self.first_day, self.last_day + 1)


def _instant(param: str, text: str, now_ms: int, *, end: bool) -> int:
    text = text.strip()
    if text == "now":
        return now_ms
    relative = _RELATIVE.match(text)
    if relative:
        return now_ms - int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            # a bare date as the end of a range means "up to the end of that day"
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end:
                moment += timedelta(days=1)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise QueryError(param, _TIME_HINT) from None


def parse_period(since: str | None, until: str | None, now_ms: int) -> Period:
    """The report period from the ``since``/``until`` parameters.

    Both are optional: ``until`` defaults to now, ``since`` to 30 days before
    ``until``.

    Raises:
        QueryError: unreadable value, ``since`` not before ``until``, or a range
            longer than 400 days.
    """
    until_ms = _instant("until", until, now_ms, end=True) if until else now_ms
    since_ms = (
        _instant("since", since, now_ms, end=False) if since else until_ms - DEFAULT_DAYS * DAY_MS
    )
    if since_ms >= until_ms:
        raise QueryError("since", "must be before until")
    if until_ms - since_ms > MAX_DAYS * DAY_MS:
        raise QueryError("since", f"the range may span at most {MAX_DAYS} days")
    if since_ms < 0:
        raise QueryError("since", "must not be before 1970-01-01")
    return Period(since_ms, until_ms)


def parse_limit(text: str | None, default: int = 100) -> int:
    """Page size: 1..1000.

    Raises:
        QueryError: not an integer in range.
    """
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise QueryError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


@functools.lru_cache(maxsize=1024)
def day_iso(day: int) -> str:
    """A day number (days since the epoch, UTC) as ``YYYY-MM-DD``."""
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


_SECONDS = [f"{second:02d}" for second in range(60)]
_MILLIS = [f".{milli:03d}Z" for milli in range(1000)]
_MINUTES: dict[int, str] = {}


def _minute_iso(minute: int) -> str:
    day, rest = divmod(minute, 1440)
    text = _MINUTES[minute] = f"{day_iso(day)}T{rest // 60:02d}:{rest % 60:02d}:"
    if len(_MINUTES) > 100_000:  # a cache, not a leak
        _MINUTES.clear()
    return text


def iso_ms(ms: int) -> str:
    """``2024-05-01T09:30:12.345Z``: what :func:`server.protocol.iso_ms` gives, faster
    (a CSV export formats three of these per row)."""
    minute, rest = divmod(ms, 60_000)
    second, milli = divmod(rest, 1000)
    return (_MINUTES.get(minute) or _minute_iso(minute)) + _SECONDS[second] + _MILLIS[milli]


# --- cursors ----------------------------------------------------------------

_CURSOR = re.compile(r"^(\d{1,15}):([A-Za-z0-9_]{1,80})$")


def encode_cursor(score: int, member: str) -> str:
    """An opaque cursor: the last item of a page, newest-first order."""
    return base64.urlsafe_b64encode(f"{score}:{member}".encode()).decode().rstrip("=")


def decode_cursor(text: str | None, member: re.Pattern[str]) -> tuple[int, str] | None:
    """``(score, member)`` of a cursor from :func:`encode_cursor`, or None if absent.

    Raises:
        QueryError: not a cursor this API handed out.
    """
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, ValueError):
        raise QueryError("cursor", "not a cursor returned by this API") from None
    match = _CURSOR.match(raw)
    if match is None or not member.match(match.group(2)):
        raise QueryError("cursor", "not a cursor returned by this API")
    return int(match.group(1)), match.group(2)


# --- abandoned-lead rows ----------------------------------------------------

SESSION_COLUMNS = ("status", "created", "active", "abandoned_at", "step", "recovered", "abandons")
"""Session hash fields a report row needs, in the order rows expect them (HMGET)."""
LEAD_COLUMNS = ("name", "email", "phone", "company")
"""Captured fields shown in the report (HMGET on the fields hash)."""


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


_STATUSES = frozenset({"open", "completed", "abandoned"})
_DELIVERED = frozenset({"pending", "delivered", "dead"})


def abandoned_event_id(session_id: str, abandons: str | None) -> str | None:
    """Id of the ``lead.abandoned`` event of the session's latest abandonment."""
    return f"evt_{session_id}_abandoned_{abandons}" if abandons else None


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
]
"""The 14 columns of a report row, in ``CSV_HEADER`` order (a CSV export skips the objects)."""


def row_values(
    session_id: str, site: str, indexed_ms: int, values: Sequence[str], at: int = 0
) -> RowValues | None:
    """A report row from the 12 strings at ``values[at:]``: ``SESSION_COLUMNS``,
    ``LEAD_COLUMNS``, then the delivery state ('' for missing values).

    Returns None when the session is gone (expired or erased).
    """
    status = values[at]
    if status not in _STATUSES:
        return None
    started = _ms(values[at + 1], indexed_ms)
    email, phone = values[at + 8] or None, values[at + 9] or None
    delivery = values[at + 11]
    return (
        session_id,
        site,
        status,
        iso_ms(started),
        iso_ms(_ms(values[at + 2], started)),
        iso_ms(_ms(values[at + 3], indexed_ms)),
        values[at + 4],
        values[at + 7] or None,
        email,
        phone,
        values[at + 10] or None,
        bool(email or phone),
        # it came back after this abandonment (and has not idled out again)
        values[at + 5] == "1" and status != "abandoned",
        delivery if delivery in _DELIVERED else "none",
    )


def abandoned_row(
    session_id: str, site: str, indexed_ms: int, values: Sequence[str], at: int = 0
) -> AbandonedRow | None:
    """:func:`row_values` as an :class:`AbandonedRow` (what the JSON answer holds)."""
    row = row_values(session_id, site, indexed_ms, values, at)
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


# --- CSV --------------------------------------------------------------------

CSV_HEADER = (
    "session_id",
    "site",
    "status",
    "started_at",
    "last_activity_at",
    "abandoned_at",
    "step",
    "name",
    "email",
    "phone",
    "company",
    "contactable",
    "recovered",
    "delivery",
)
_FORMULA_START = frozenset("=+-@\t\r")
_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def safe_cell(value: str | None) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    if not value:
        return ""
    return "'" + value if value[0] in _FORMULA_START else value


def _text(value: str | None) -> str:
    """A formula-safe cell, quoted as RFC 4180 requires (comma, quote, CR or LF)."""
    cell = safe_cell(value)
    if _NEEDS_QUOTES.search(cell):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def csv_record(row: RowValues) -> str:
    """One CSV line (CRLF-terminated). Ids, times, flags and states never need
    quoting; captured text is made formula-safe and quoted when it must be."""
    return (
        ",".join(
            (
                row[0],
                _text(row[1]),
                row[2],
                row[3],
                row[4],
                row[5],
                _text(row[6]),
                _text(row[7]),
                _text(row[8]),
                _text(row[9]),
                _text(row[10]),
                "yes" if row[11] else "no",
                "yes" if row[12] else "no",
                row[13],
            )
        )
        + "\r\n"
    )


def csv_lines(
    chunks: Iterable[Sequence[RowValues]], *, header: bool = True, bom: bool = False
) -> Iterator[str]:
    """RFC 4180 text (CRLF, quoting as needed), one string per chunk of rows.

    Written by hand rather than with :mod:`csv`: three times faster on a large
    export, and only five of the fourteen columns can hold text that needs quoting.
    """
    if header:
        yield ("\ufeff" if bom else "") + ",".join(CSV_HEADER) + "\r\n"
    for rows in chunks:
        yield "".join(map(csv_record, rows))


# --- summary ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepDropOff:
    """Sessions that reached a flow step and sessions abandoned at it."""

    step: str
    question: str | None
    reached: int
    stopped: int


@dataclass(frozen=True, slots=True)
class SiteSummary:
    site: str
    started: int
    completed: int
    abandoned: int
    recovered: int
    abandonment_rate: float
    drop_off: list[StepDropOff]


@dataclass(frozen=True, slots=True)
class DayCount:
    day: str
    started: int
    completed: int
    abandoned: int
    recovered: int


@dataclass(frozen=True, slots=True)
class Summary:
    """Totals over whole UTC days ``first_day`` .. ``last_day`` (per-day counters)."""

    first_day: str
    last_day: str
    started: int
    completed: int
    abandoned: int
    recovered: int
    abandonment_rate: float
    drop_off: list[StepDropOff]
    sites: list[SiteSummary]
    daily: list[DayCount]


_TOTALS = ("started", "completed", "abandoned", "recovered")


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _drop_off(site: Site, started: int, stops: dict[str, int]) -> list[StepDropOff]:
    """Reached = started minus those who stopped at an earlier step (flow order)."""
    out: list[StepDropOff] = []
    gone = 0
    for step in site.flow:
        stopped = stops.get(step.field, 0)
        out.append(StepDropOff(step.field, step.ask, max(started - gone, stopped), stopped))
        gone += stopped
    # steps no longer in the flow (the flow was edited): keep them so totals add up
    known = {step.field for step in site.flow}
    for name in sorted(set(stops) - known):
        out.append(StepDropOff(name or "(unknown)", None, stops[name], stops[name]))
    return out


def _merge_drop_off(per_site: Iterable[list[StepDropOff]]) -> list[StepDropOff]:
    merged: dict[str, StepDropOff] = {}
    for steps in per_site:
        for step in steps:
            seen = merged.get(step.step)
            merged[step.step] = (
                step
                if seen is None
                else StepDropOff(
                    step.step,
                    seen.question or step.question,
                    seen.reached + step.reached,
                    seen.stopped + step.stopped,
                )
            )
    return list(merged.values())


def summarize(
    sites: Sequence[Site], period: Period, counters: Iterable[tuple[str, int, dict[str, str]]]
) -> Summary:
    """Totals, abandonment rate, drop-off by step and a per-day series.

    Args:
        sites: the sites in scope, in display order.
        period: the report period; the summary covers the days it touches.
        counters: ``(site, day, counter hash)`` for every shard (summed here).
    """
    days = list(period.days())
    per_site: dict[str, dict[str, int]] = {site.id: {} for site in sites}
    per_day: dict[int, dict[str, int]] = {day: dict.fromkeys(_TOTALS, 0) for day in days}
    for site_id, day, raw in counters:
        if site_id not in per_site or day not in per_day:
            continue
        totals = per_site[site_id]
        for name, value in raw.items():
            count = _int(value)
            totals[name] = totals.get(name, 0) + count
            if name in _TOTALS:
                per_day[day][name] += count
    summaries = []
    for site in sites:
        totals = per_site[site.id]
        stops = {k[5:]: v for k, v in totals.items() if k.startswith("stop:")}
        started, abandoned = totals.get("started", 0), totals.get("abandoned", 0)
        summaries.append(
            SiteSummary(
                site=site.id,
                started=started,
                completed=totals.get("completed", 0),
                abandoned=abandoned,
                recovered=totals.get("recovered", 0),
                abandonment_rate=_rate(abandoned, started),
                drop_off=_drop_off(site, started, stops),
            )
        )
    started = sum(s.started for s in summaries)
    abandoned = sum(s.abandoned for s in summaries)
    return Summary(
        first_day=day_iso(days[0]),
        last_day=day_iso(days[-1]),
        started=started,
        completed=sum(s.completed for s in summaries),
        abandoned=abandoned,
        recovered=sum(s.recovered for s in summaries),
        abandonment_rate=_rate(abandoned, started),
        drop_off=_merge_drop_off(s.drop_off for s in summaries),
        sites=summaries,
        daily=[DayCount(day_iso(day), **per_day[day]) for day in days],
    )


# --- the delivery log (CONTRACT §5) -----------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    at: str
    status_code: int | None
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryItem:
    """One outbox event as ``/api/deliveries`` shows it (exact §5 shape)."""

    id: str
    event: str
    session_id: str
    site: str
    status: Literal["pending", "delivered", "dead"]
    attempts: list[DeliveryAttempt]
    created_at: str
    next_attempt_at: str | None


def _attempt(raw: str) -> DeliveryAttempt | None:
    try:
        data: dict[str, Any] = json.loads(raw)
        code = data.get("status_code")
        latency = data.get("latency_ms")
        error = data.get("error")
        return DeliveryAttempt(
            at=iso_ms(int(data["at"])),
            status_code=code if isinstance(code, int) else None,
            latency_ms=float(latency) if isinstance(latency, int | float) else None,
            error=str(error) if error else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None


def delivery_item(event_id: str, raw: dict[str, str], attempts: list[str]) -> DeliveryItem | None:
    """The log entry of one event from its hash and attempt list; None if it is gone."""
    status = raw.get("status")
    if status not in ("pending", "delivered", "dead") or "created" not in raw:
        return None
    parsed = [a for a in map(_attempt, attempts) if a is not None]
    due = raw.get("next") if status == "pending" else None
    return DeliveryItem(
        id=event_id,
        event=raw.get("type", ""),
        session_id=raw.get("session", ""),
        site=raw.get("site", ""),
        status=status,  # type: ignore[arg-type]
        attempts=parsed,
        created_at=iso_ms(_int(raw["created"])),
        next_attempt_at=iso_ms(_int(due)) if due else None,
    )


# --- one session ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    seq: int
    sender: Annotated[str, Field(alias="from")]
    text: str
    ts: str
    field: str | None


@dataclass(frozen=True, slots=True)
class SessionDetail:
    """A session with its transcript, captured fields, lead and delivery events."""

    id: str
    site: str
    status: Literal["open", "completed", "abandoned"]
    created_at: str
    last_activity_at: str
    abandoned_at: str | None
    completed_at: str | None
    step: str
    recovered: bool
    user_id: str
    page: dict[str, str]
    fields: dict[str, str]
    transcript: list[TranscriptEntry]
    lead: dict[str, Any] | None
    deliveries: list[DeliveryItem]


def _entry(raw: dict[str, Any]) -> TranscriptEntry:
    return TranscriptEntry(
        seq=int(raw.get("seq", 0)),
        sender=str(raw.get("from", "")),
        text=str(raw.get("text", "")),
        ts=iso_ms(int(raw.get("ts", 0))),
        field=str(raw["field"]) if raw.get("field") else None,
    )


def session_detail(
    record: SessionRecord, site: Site | None, deliveries: list[DeliveryItem]
) -> SessionDetail:
    """The ``/api/sessions/{id}`` view; ``lead`` is null when the site is gone."""
    abandoned = record.status is SessionStatus.ABANDONED
    return SessionDetail(
        id=record.id,
        site=record.site,
        status=record.status.value,
        created_at=iso_ms(record.created_ms),
        last_activity_at=iso_ms(record.active_ms),
        abandoned_at=iso_ms(record.abandoned_ms) if record.abandoned_ms else None,
        completed_at=iso_ms(record.completed_ms) if record.completed_ms else None,
        step=record.step,
        recovered=record.recovered,
        user_id=record.user_id,
        page=dict(record.page),
        fields={k: v for k, v in record.fields.items() if v},
        transcript=[_entry(e) for e in record.transcript],
        lead=build_lead(record, site, abandoned=abandoned) if site else None,
        deliveries=deliveries,
    )


# --- whole answers ----------------------------------------------------------


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
class DeliveryPage:
    items: list[DeliveryItem]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of ``/api/sessions`` (newest first)."""

    items: list[SessionRow]
    next_cursor: str | None
