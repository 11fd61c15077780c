"""The recovery report (CONTRACT §11, Report), pure: what happened after abandonments.

Counts come from the per-day counters the scripts keep (``stats:<site>:<day>``), each
counted on the day it happened, so they cover the whole UTC days the period touches:

- ``abandoned``, and ``contactable`` (an email or a phone was captured) -- ``sweep.lua``
- ``reminded:<n>``: reminder step n reached the SMTP server -- ``settle.lua``
- ``link_opened``: a resume link reopened the session, first time -- ``link_resume.lua``
- ``recovered`` and ``recovered:<cause>`` (``link``, ``reminder:<n>``, ``returned``),
  ``recovered_completed``: a recovered session completed -- ``visitor.lua``

The recovered sessions themselves (the ``recovered`` index, in the exact period) give
each one's cause and the median time from abandonment to return.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..protocol import iso_ms
from ..recovery import MAX_REMINDERS
from ..sites import Site
from .params import Period, day_iso, int_or_zero

__all__ = [
    "RECOVERY_FIELDS",
    "RecoveredSession",
    "RecoveryCounts",
    "RecoveryReport",
    "Stage",
    "recovered_session",
    "recovery_report",
]

RECOVERY_FIELDS = ("site", "abandoned_at", "recovered_at", "recovered_by", "status")
"""What :func:`recovered_session` reads of a session hash, in order."""

SESSIONS_SHOWN = 100
"""Recovered sessions listed in the report (newest first); the counts cover them all."""


@dataclass(frozen=True, slots=True)
class RecoveredSession:
    session_id: str
    site: str
    abandoned_at: str | None
    recovered_at: str
    recovered_by: str
    status: str
    seconds_to_recover: float | None


@dataclass(slots=True)
class RecoveryCounts:
    abandoned: int = 0
    contactable: int = 0
    reminded: dict[str, int] = field(default_factory=dict)
    """Per reminder step ("1".."3"): the emails that reached the SMTP server."""
    link_opened: int = 0
    recovered: int = 0
    recovered_by: dict[str, int] = field(default_factory=dict)
    completed_after_recovery: int = 0
    recovery_rate: float = 0.0

    def add(self, raw: dict[str, str]) -> None:
        self.abandoned += int_or_zero(raw.get("abandoned"))
        self.contactable += int_or_zero(raw.get("contactable"))
        self.link_opened += int_or_zero(raw.get("link_opened"))
        self.recovered += int_or_zero(raw.get("recovered"))
        self.completed_after_recovery += int_or_zero(raw.get("recovered_completed"))
        for name, value in raw.items():
            if name.startswith("reminded:"):
                step = name.removeprefix("reminded:")
                self.reminded[step] = self.reminded.get(step, 0) + int_or_zero(value)
            elif name.startswith("recovered:"):
                cause = name.removeprefix("recovered:")
                self.recovered_by[cause] = self.recovered_by.get(cause, 0) + int_or_zero(value)

    def settle(self) -> None:
        """Fill the steps with none sent, sort the causes, work out the rate."""
        for step in range(1, MAX_REMINDERS + 1):
            self.reminded.setdefault(str(step), 0)
        self.reminded = dict(sorted(self.reminded.items()))
        self.recovered_by = dict(sorted(self.recovered_by.items()))
        self.recovery_rate = round(self.recovered / self.abandoned, 4) if self.abandoned else 0.0


@dataclass(frozen=True, slots=True)
class Stage:
    """One bar of the chart: abandoned -> contactable -> reminded -> opened -> recovered
    -> completed."""

    stage: str
    count: int


@dataclass(frozen=True, slots=True)
class SiteRecovery:
    site: str
    counts: RecoveryCounts


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    first_day: str
    last_day: str
    totals: RecoveryCounts
    median_seconds_to_recover: float | None
    stages: list[Stage]
    sites: list[SiteRecovery]
    sessions: list[RecoveredSession]
    """The newest :data:`SESSIONS_SHOWN` recovered sessions of the period."""


def _stages(counts: RecoveryCounts) -> list[Stage]:
    return [
        Stage("abandoned", counts.abandoned),
        Stage("contactable", counts.contactable),
        Stage("reminded", counts.reminded.get("1", 0)),
        Stage("opened", counts.link_opened),
        Stage("recovered", counts.recovered),
        Stage("completed", counts.completed_after_recovery),
    ]


def recovered_session(session_id: str, raw: Sequence[str | None]) -> RecoveredSession | None:
    """A row from the session hash's :data:`RECOVERY_FIELDS` (None: the session is
    gone, or came back before ``recovered_at`` was kept)."""
    site, abandoned_at, recovered_at, recovered_by, status = raw
    if not site or not recovered_at:
        return None
    left, back = int_or_zero(abandoned_at), int_or_zero(recovered_at)
    return RecoveredSession(
        session_id,
        site,
        iso_ms(left) if left else None,
        iso_ms(back),
        recovered_by or "returned",
        status or "",
        max(0, back - left) / 1000 if left else None,
    )


def recovery_report(
    sites: Sequence[Site],
    period: Period,
    counters: Iterable[tuple[str, int, dict[str, str]]],
    recovered: Iterable[RecoveredSession],
) -> RecoveryReport:
    """The report over ``sites`` for ``period``.

    Args:
        counters: ``(site, day, counter hash)`` for every shard (summed here).
        recovered: the sessions recovered in the period (any order).
    """
    days = set(period.days())
    per_site = {site.id: RecoveryCounts() for site in sites}
    totals = RecoveryCounts()
    for site_id, day, raw in counters:
        if site_id in per_site and day in days:
            per_site[site_id].add(raw)
            totals.add(raw)
    for counts in (*per_site.values(), totals):
        counts.settle()
    back = sorted(recovered, key=lambda s: (s.recovered_at, s.session_id), reverse=True)
    waits = [s.seconds_to_recover for s in back if s.seconds_to_recover is not None]
    return RecoveryReport(
        first_day=day_iso(period.first_day),
        last_day=day_iso(period.last_day),
        totals=totals,
        median_seconds_to_recover=round(statistics.median(waits), 3) if waits else None,
        stages=_stages(totals),
        sites=[SiteRecovery(site.id, per_site[site.id]) for site in sites],
        sessions=back[:SESSIONS_SHOWN],
    )
