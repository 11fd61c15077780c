"""The report summary (pure): totals, abandonment rate, drop-off by step, per day.

Built from the per-day counters the session scripts keep (``stats:<site>:<day>``),
so it covers the whole UTC days the period touches (``first_day`` .. ``last_day``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..sites import Site
from .params import Period, day_iso, int_or_zero

__all__ = ["DayCount", "SiteSummary", "StepDropOff", "Summary", "summarize"]


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
    spam: int = 0
    """Sessions flagged spam (§12): kept apart, forwarded only when released."""
    qualified: int = 0
    """Completed leads whose score reached the site's ``qualified_at`` (§12)."""
    qualified_rate: float = 0.0
    """``qualified`` / ``completed``."""


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
    spam: int = 0


_TOTALS = ("started", "completed", "abandoned", "recovered")


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _drop_off(
    site: Site, started: int, stops: dict[str, int], asked: dict[str, int]
) -> list[StepDropOff]:
    """Reached = the sessions that were asked the step (``asked:<step>``, counted by
    the scripts: with branching, not every session is); for days counted before that
    counter existed, started minus those who stopped at an earlier step (flow order)."""
    out: list[StepDropOff] = []
    gone = 0
    for step in site.flow:
        stopped = stops.get(step.field, 0)
        reached = asked.get(step.field, 0) if asked else started - gone
        out.append(StepDropOff(step.field, step.ask, max(reached, stopped), stopped))
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
            count = int_or_zero(value)
            totals[name] = totals.get(name, 0) + count
            if name in _TOTALS:
                per_day[day][name] += count
    summaries = []
    for site in sites:
        totals = per_site[site.id]
        stops = {k[5:]: v for k, v in totals.items() if k.startswith("stop:")}
        asked = {k[6:]: v for k, v in totals.items() if k.startswith("asked:")}
        started, abandoned = totals.get("started", 0), totals.get("abandoned", 0)
        summaries.append(
            SiteSummary(
                site=site.id,
                started=started,
                completed=totals.get("completed", 0),
                abandoned=abandoned,
                recovered=totals.get("recovered", 0),
                abandonment_rate=_rate(abandoned, started),
                drop_off=_drop_off(site, started, stops, asked),
                spam=totals.get("spam", 0),
                qualified=totals.get("qualified", 0),
                qualified_rate=_rate(totals.get("qualified", 0), totals.get("completed", 0)),
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
        spam=sum(s.spam for s in summaries),
    )
