"""The admin surface's query parameters (pure): periods, page sizes and cursors.

Periods are ``[since, until)`` in milliseconds (UTC). Every parameter the API or a
page cannot use raises :class:`QueryError`, naming the parameter (HTTP 400).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ..errors import ChatleadError

__all__ = [
    "DAY_MS",
    "MAX_DAYS",
    "MAX_LIMIT",
    "Period",
    "QueryError",
    "SESSION_ID",
    "day_iso",
    "delivery_status",
    "decode_cursor",
    "encode_cursor",
    "int_or_zero",
    "iso_ms",
    "parse_limit",
    "parse_period",
    "session_status",
]

SESSION_ID = re.compile(r"^[0-9a-f]{24}$")
"""A session id as it may appear in a path or a cursor."""
DAY_MS = 86_400_000
DEFAULT_DAYS = 30
MAX_DAYS = 400
MAX_LIMIT = 1000


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
    """``2024-05-01T09:30:12.345Z``: what :func:`chatlead.protocol.iso_ms` gives, faster
    (a CSV export formats three of these per row)."""
    minute, rest = divmod(ms, 60_000)
    second, milli = divmod(rest, 1000)
    return (_MINUTES.get(minute) or _minute_iso(minute)) + _SECONDS[second] + _MILLIS[milli]


def int_or_zero(value: str | None) -> int:
    """A stored counter or time; 0 when absent or unreadable."""
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


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


_SESSION_STATUSES = (None, "open", "completed", "abandoned", "spam")
_DELIVERY_STATUSES = (None, "pending", "delivered", "dead")


def session_status(text: str | None) -> str | None:
    """The ``status`` filter of a session list.

    Raises:
        QueryError: not open, completed, abandoned or spam.
    """
    status = text or None
    if status not in _SESSION_STATUSES:
        raise QueryError("status", "must be open, completed, abandoned or spam")
    return status


def delivery_status(text: str | None) -> str | None:
    """The ``status`` filter of the delivery log.

    Raises:
        QueryError: not pending, delivered or dead.
    """
    status = text or None
    if status not in _DELIVERY_STATUSES:
        raise QueryError("status", "must be pending, delivered or dead")
    return status
