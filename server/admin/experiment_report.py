"""The experiments report (CONTRACT §12, Experiments), pure: each variant's sessions,
completions and qualified leads, its completion rate with a 95 % Wilson interval, and
the two-sided p-value of a two-proportion z-test against the site's first variant.

Counted by the scripts per day (``variant_started:<v>``, ``variant_completed:<v>``,
``variant_qualified:<v>``), so it covers the whole UTC days the period touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..experiments import Interval, two_proportion_p, wilson
from ..sites import Site
from .params import Period, day_iso, int_or_zero

__all__ = ["ArmReport", "ExperimentReport", "SiteExperiment", "experiment_report"]


@dataclass(frozen=True, slots=True)
class ArmReport:
    variant: str
    weight: int
    sessions: int
    completed: int
    qualified: int
    completion_rate: float
    completion_interval: Interval
    """The 95 % Wilson score interval of ``completion_rate``."""
    p_value: float | None
    """Two-sided, against the first variant (None for the first itself, or no data)."""


@dataclass(frozen=True, slots=True)
class SiteExperiment:
    site: str
    variants: list[ArmReport]


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    first_day: str
    last_day: str
    sites: list[SiteExperiment]
    """Every site in scope that runs an experiment."""


def _arms(site: Site, totals: dict[str, int]) -> list[ArmReport]:
    arms: list[ArmReport] = []
    first: tuple[int, int] | None = None
    for variant in site.variants:
        n = totals.get(f"variant_started:{variant.name}", 0)
        done = totals.get(f"variant_completed:{variant.name}", 0)
        p = None if first is None else two_proportion_p(done, n, *first)
        arms.append(
            ArmReport(
                variant=variant.name,
                weight=variant.weight,
                sessions=n,
                completed=done,
                qualified=totals.get(f"variant_qualified:{variant.name}", 0),
                completion_rate=round(done / n, 4) if n else 0.0,
                completion_interval=wilson(done, n),
                p_value=None if p is None else round(p, 6),
            )
        )
        first = first or (done, n)
    return arms


def experiment_report(
    sites: Sequence[Site], period: Period, counters: Iterable[tuple[str, int, dict[str, str]]]
) -> ExperimentReport:
    """The report for the ``sites`` that have variants; ``counters`` as for the summary."""
    days = set(period.days())
    totals: dict[str, dict[str, int]] = {site.id: {} for site in sites if site.variants}
    for site_id, day, raw in counters:
        if site_id in totals and day in days:
            into = totals[site_id]
            for name, value in raw.items():
                if name.startswith("variant_"):
                    into[name] = into.get(name, 0) + int_or_zero(value)
    return ExperimentReport(
        first_day=day_iso(period.first_day),
        last_day=day_iso(period.last_day),
        sites=[SiteExperiment(s.id, _arms(s, totals[s.id])) for s in sites if s.variants],
    )
