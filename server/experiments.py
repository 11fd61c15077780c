"""Experiments (CONTRACT §12): ``[[sites.X.variants]]`` and their statistics, no I/O.

A visitor is given a variant by a hash of the site and their ``userId``, weighted, so
the same visitor always gets the same one (a ``variant`` in ``hello`` is not read). A
variant may replace the site's greeting and flow; the lead gets the field ``variant``.

The report compares each variant's completion rate with the first variant's: a 95 %
Wilson score interval per variant and the two-sided p-value of a two-proportion z-test
(pooled standard error).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .steps import FlowStep, check_flow

__all__ = [
    "MAX_VARIANTS",
    "Interval",
    "Variant",
    "choose",
    "two_proportion_p",
    "wilson",
]

MAX_VARIANTS = 10
Z_95 = 1.959963984540054
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class Variant(BaseModel):
    """One arm of a site's experiment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weight: Annotated[int, Field(ge=1, le=10_000)] = 1
    greeting: str | None = None
    flow: tuple[FlowStep, ...] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lowercase letters, digits, - and _ (up to 40)")
        return value

    @field_validator("flow")
    @classmethod
    def _flow(cls, value: tuple[FlowStep, ...] | None) -> tuple[FlowStep, ...] | None:
        return None if value is None else check_flow(value)


def choose(variants: Sequence[Variant], site_id: str, user_id: str) -> Variant | None:
    """The visitor's variant: the same for the same site and ``userId``, each variant
    as often as its weight says; None for a site without variants."""
    if not variants:
        return None
    digest = hashlib.sha256(f"{site_id}\x00{user_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in variants)
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: the point is below the total weight")


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


def wilson(successes: int, trials: int, z: float = Z_95) -> Interval:
    """The Wilson score interval of a proportion (0..1); [0, 1] with no trials."""
    if trials == 0:
        return Interval(0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value that two proportions differ (pooled z-test); None when either
    side has no trials, 1.0 when nothing varies."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (s1 / n1 - s2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))
