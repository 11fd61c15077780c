"""Each destination's delivery health (pure): last success, failures of the last hour,
dead letters, and the state they add up to.

``settle.lua`` keeps the counters of every destination per shard, in the same atomic
step as each outcome (:func:`chatlead.keys.destination_health` and its siblings);
:meth:`.queries.Reader.destination_health` reads every shard's share in one pipeline
and :func:`destination_health` adds them up. The API (``GET /api/destinations``), the
delivery log and the dashboard all show what it gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ..hooks import Hook
from ..sites import Destination, Site
from .params import int_or_zero

__all__ = [
    "DestinationHealth",
    "HealthList",
    "HealthShare",
    "State",
    "ago",
    "destination_health",
    "health_state",
    "site_destinations",
    "target_of",
    "targets",
]

State = Literal["healthy", "degraded", "failing", "idle"]
"""``healthy``: nothing failed in the last hour and no dead letters; ``failing``: it
failed in the last hour and has not succeeded since; ``degraded``: failures or dead
letters, but it delivered since; ``idle``: it has had no attempt (in the retention)."""


@dataclass(frozen=True, slots=True)
class DestinationHealth:
    """One destination of one site at a glance (``GET /api/destinations`` items)."""

    site: str
    destination: str
    format: str
    last_success_ms: int | None
    """Last delivered attempt (ms since the epoch), or none in the retention."""
    last_failure_ms: int | None
    last_error: str | None
    """What the last failed attempt got, as the delivery log shows it (first 120 bytes)."""
    failures_last_hour: int
    """Failed attempts in the last hour (retries included)."""
    dead_letters: int
    """Events dead now (a replay takes one out)."""
    state: State


@dataclass(frozen=True, slots=True)
class HealthList:
    """``GET /api/destinations``: every destination of every site, in config order."""

    items: list[DestinationHealth]


HealthShare = tuple[Mapping[str, str], int, int]
"""One shard's share of a destination's health: its hash, failures in the window, dead
letters."""


def health_state(
    last_success_ms: int | None,
    last_failure_ms: int | None,
    failures_last_hour: int,
    dead_letters: int,
) -> State:
    """The state the numbers add up to (see :data:`State`)."""
    if last_success_ms is None and last_failure_ms is None and not dead_letters:
        return "idle"
    if not failures_last_hour and not dead_letters:
        return "healthy"
    if failures_last_hour and (last_failure_ms or 0) > (last_success_ms or 0):
        return "failing"
    return "degraded"


def _latest(values: Iterable[int]) -> int | None:
    return max((v for v in values if v > 0), default=None)


def destination_health(
    site: str, destination: Destination, shares: Sequence[HealthShare]
) -> DestinationHealth:
    """One destination's health from every shard's share: the latest times (and the
    error of the latest failure), the counts summed."""
    last_success = _latest(int_or_zero(raw.get("ok")) for raw, _, _ in shares)
    failed = [(int_or_zero(raw.get("fail")), raw.get("error")) for raw, _, _ in shares]
    last_failure, last_error = max(failed, key=lambda pair: pair[0], default=(0, None))
    failures = sum(count for _, count, _ in shares)
    dead = sum(count for _, _, count in shares)
    failure_ms = last_failure or None
    return DestinationHealth(
        site=site,
        destination=destination.name,
        format=destination.format,
        last_success_ms=last_success,
        last_failure_ms=failure_ms,
        last_error=(last_error or None) if failure_ms else None,
        failures_last_hour=failures,
        dead_letters=dead,
        state=health_state(last_success, failure_ms, failures, dead),
    )


def site_destinations(site: Site, hooks: Iterable[Hook] = ()) -> list[Destination]:
    """Where a site's events go: its own destinations, then the REST hooks taking its
    events (oldest first), as :class:`chatlead.routing.Routes` routes them."""
    return [*site.destinations, *(h.destination() for h in hooks if h.site in (None, site.id))]


def targets(sites: Iterable[Site], hooks: Sequence[Hook] = ()) -> dict[tuple[str, str], str]:
    """``(site, destination name)`` -> where it sends (:func:`target_of`), for every
    destination of ``sites``."""
    return {
        (site.id, destination.name): target_of(destination)
        for site in sites
        for destination in site_destinations(site, hooks)
    }


def target_of(destination: Destination) -> str:
    """Where a destination sends, without credentials, paths or query strings."""
    if destination.is_inbox:
        return "built-in inbox"
    if destination.url is None:
        return destination.format
    return f"{destination.format} → {urlsplit(destination.url).hostname or '?'}"


def ago(ms: int | None, now_ms: int) -> str:
    """How long ago ``ms`` was, in a few words: ``just now``, ``3 min ago``, ``5 h
    ago``, ``2 days ago`` (``never`` for no time; a time ahead of ``now_ms``, from
    another clock, is ``just now``)."""
    if ms is None:
        return "never"
    minutes = max(0, now_ms - ms) // 60_000
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 60 * 48:
        return f"{minutes // 60} h ago"
    days = minutes // (60 * 24)
    return f"{days} days ago"
