"""Appointment slots (CONTRACT §12, Slots): ``[sites.X.availability]``, with no I/O.

The grid is the site's local time: on each listed weekday that is not blocked, slots of
``slot`` length from the start of ``hours`` while one fits before its end. A slot is
offered when it starts at least ``lead_time`` and at most ``horizon`` after "now" (Redis
time, given by the caller) and nobody holds it. Local times are turned into UTC with
:mod:`zoneinfo`: a slot whose start does not exist (the hour skipped when clocks go
forward) is not offered, and one whose start exists twice (the hour repeated when they go
back) is the first of the two.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Set
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .units import parse_duration

__all__ = ["Availability", "Slot", "free_slots", "slot_at"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_OFFER = 20
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Slot:
    """One bookable slot: its UTC start (the stored value) and how the visitor reads it."""

    value: str
    """ISO-8601 UTC start, e.g. ``2026-12-03T15:00:00Z``."""
    label: str
    """In the site's time zone, e.g. ``Thu 3 Dec, 10:00–12:00``."""

    def option(self) -> dict[str, str]:
        return {"label": self.label, "value": self.value}


class Availability(BaseModel):
    """When a site takes appointments, and how many slots a prompt lists."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str
    days: tuple[str, ...] = WEEKDAYS[:5]
    hours: str = "09:00-17:00"
    slot: float = 3600.0
    lead_time: float = 0.0
    horizon: float = 14 * 86400.0
    blocked: tuple[date, ...] = ()
    offer: Annotated[int, Field(ge=1, le=MAX_OFFER)] = 6
    availability_class_id: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. America/New_York)") from None
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        days = tuple(day.lower() for day in value)
        unknown = [day for day in days if day not in WEEKDAYS]
        if unknown or not days:
            raise ValueError(f"use some of {', '.join(WEEKDAYS)}, not {unknown or 'none'}")
        return days

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        found = _HOURS.match(value)
        if not found:
            raise ValueError('write the opening hours as "08:00-17:00"')
        start, end = (int(found[1]), int(found[2])), (int(found[3]), int(found[4]))
        if not all(h < 24 and m < 60 for h, m in (start, end)) or start >= end:
            raise ValueError(f"{value!r}: the start must come before the end, within a day")
        return value

    @field_validator("slot", "lead_time", "horizon", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _fits(self) -> Availability:
        opens, closes = self.opening()
        if self.slot < 300 or timedelta(seconds=self.slot) > _span(opens, closes):
            raise ValueError("slot must be at least 5m and fit within hours")
        if not 0 < self.horizon <= 366 * 86400:
            raise ValueError("horizon must be more than 0 and at most 366d")
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def opening(self) -> tuple[time, time]:
        found = _HOURS.match(self.hours)
        assert found is not None
        return time(int(found[1]), int(found[2])), time(int(found[3]), int(found[4]))


def _span(opens: time, closes: time) -> timedelta:
    day = date(2000, 1, 1)
    return datetime.combine(day, closes) - datetime.combine(day, opens)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _label(start: datetime, end: datetime) -> str:
    return (
        f"{_DAYS[start.weekday()]} {start.day} {_MONTHS[start.month - 1]}, "
        f"{start:%H:%M}\u2013{end:%H:%M}"
    )


def _local_start(day: date, at: time, zone: ZoneInfo) -> datetime | None:
    """``day`` at ``at`` in ``zone`` (the earlier of a repeated hour); None if clocks
    skip it that day."""
    local = datetime.combine(day, at, tzinfo=zone)
    back = local.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != local.replace(tzinfo=None):
        return None  # in the hour skipped when clocks go forward
    return local


def _grid(av: Availability, since: datetime) -> Iterator[Slot]:
    """Every slot of the grid from the local day of ``since`` to the horizon, in order."""
    zone = av.zone()
    opens, closes = av.opening()
    length = timedelta(seconds=av.slot)
    first = since.astimezone(zone).date()
    last = (since + timedelta(seconds=av.horizon)).astimezone(zone).date()
    blocked = set(av.blocked)
    day = first
    while day <= last:
        if WEEKDAYS[day.weekday()] in av.days and day not in blocked:
            at = datetime.combine(day, opens)
            end_of_day = datetime.combine(day, closes)
            while at + length <= end_of_day:
                start = _local_start(day, at.time(), zone)
                if start is not None:
                    # the end as the wall clock reads it (a DST change mid-slot shows so)
                    end = (start.astimezone(UTC) + length).astimezone(zone)
                    yield Slot(_iso(start), _label(start, end))
                at += length
        day += timedelta(days=1)


def free_slots(
    av: Availability, now_ms: int, held: Set[str], limit: int | None = None
) -> list[Slot]:
    """The next ``limit`` (default ``offer``) slots not in ``held`` (UTC values), from
    ``lead_time`` after ``now_ms`` up to the horizon."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    earliest = now + timedelta(seconds=av.lead_time)
    latest = now + timedelta(seconds=av.horizon)
    out: list[Slot] = []
    for slot in _grid(av, now):
        start = datetime.fromisoformat(slot.value)
        if start < earliest or slot.value in held:
            continue
        if start > latest or len(out) >= (limit or av.offer):
            break
        out.append(slot)
    return out


def slot_at(av: Availability, value: str, now_ms: int) -> Slot | None:
    """The slot ``value`` names if it is one of the grid that may be booked now (its
    start at least ``lead_time`` and at most ``horizon`` away), else None."""
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        return None
    if start.tzinfo is None or _iso(start) != value:
        return None  # only the exact UTC spelling offers use
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    if not now + timedelta(seconds=av.lead_time) <= start <= now + timedelta(seconds=av.horizon):
        return None
    day = start.astimezone(av.zone()) - timedelta(days=1)
    for slot in _grid(av, day):  # from the day before: a slot near midnight UTC
        if slot.value == value:
            return slot
        if slot.value > value:
            return None
    return None
