"""Durations and rates as settings write them (``15m``, ``300/min``), with no I/O."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Annotated, NamedTuple

from pydantic_settings import NoDecode

__all__ = ["Duration", "Rate", "TokenBucket", "format_duration", "parse_duration", "parse_rate"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_duration(value: str | float | int) -> float:
    """Parse ``90s``, ``15m``, ``2h``, ``30d``, ``250ms`` (or ``0``) into seconds.

    Text needs a unit: ``15`` could mean seconds or minutes, so it is refused.
    Numbers given from code are seconds.

    Raises:
        ValueError: the text is not a duration, or has no unit.
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 15m, 2h or 7d")
        number, unit = match.groups()
        if unit is None and float(number) != 0:
            raise ValueError(f"{number} has no unit; write {number}s, {number}m or {number}h")
        seconds = float(number) * _UNIT_SECONDS[unit or "s"]
    if seconds < 0:
        raise ValueError(f"negative duration: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest text :func:`parse_duration` reads back as ``seconds`` (``900`` -> ``15m``)."""
    if seconds == 0:
        return "0"
    for unit, size in _UNIT_SECONDS.items():
        count = seconds / size
        if count >= 1 and round(count, 6).is_integer():
            return f"{round(count)}{unit}"
    return f"{seconds * 1000:g}ms"


class Rate(NamedTuple):
    """``events`` per ``per_s`` seconds, in bursts of up to ``events``."""

    events: int
    per_s: float

    def __str__(self) -> str:
        """As :func:`parse_rate` reads it back (``300/min``, ``5/s``, ``50/10m``)."""
        period = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.per_s)
        return f"{self.events}/{period or format_duration(self.per_s)}"


_RATE_UNITS = {"s": "1s", "sec": "1s", "min": "1m", "h": "1h", "hour": "1h", "d": "1d"}


def parse_rate(value: str | Rate) -> Rate:
    """Parse ``300/min``, ``5/s``, ``1000/h`` or ``50/10m`` into a :class:`Rate`.

    Raises:
        ValueError: not ``<count>/<unit or duration>`` with a positive count and period.
    """
    if isinstance(value, Rate):
        return value
    count, slash, period = str(value).partition("/")
    if not slash or not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"{value!r} is not a rate; write e.g. 300/min, 5/s or 1000/h")
    per_s = parse_duration(_RATE_UNITS.get(period.strip(), period))
    if per_s <= 0:
        raise ValueError(f"{value!r} needs a period longer than zero")
    return Rate(int(count), per_s)


Duration = Annotated[float, NoDecode]
"""A duration setting: seconds, read from text with a unit."""


class TokenBucket:
    """``rate`` frames per second with bursts of ``burst``, on an injected clock."""

    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.stamp = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
