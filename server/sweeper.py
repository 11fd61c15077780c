"""The abandonment sweeper: flag sessions whose idle deadline passed.

Each pass runs ``sweep.lua`` on every shard in one round trip. The script decides
with Redis' clock and removes each session from the deadline set in the same
atomic step that flags it, so any number of sweepers, in any number of
processes, flag each session exactly once. Under a ``DURABILITY`` other than
``memory`` the flags are confirmed (``WAIT``/``WAITAOF``) before widgets are told;
until then they are kept and confirmed again on the next pass. Between passes the loop sleeps until
the next deadline, never longer than ``MAX_SLEEP_S``, never in a busy loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from . import metrics
from .errors import StoreError
from .loops import rest
from .routing import Routes
from .store import Store, SweepResult

__all__ = ["Sweeper", "pause_after"]

log = logging.getLogger("chatlead.sweeper")

BATCH = 500
MAX_SLEEP_S = 0.5
MIN_SLEEP_S = 0.02


def pause_after(result: SweepResult) -> float:
    """Seconds to sleep after a pass: none if a shard had more expired than a batch."""
    if result.full:
        return 0.0
    if result.next_deadline_ms is None:
        return MAX_SLEEP_S
    wait = (result.next_deadline_ms - result.now_ms) / 1000
    return min(MAX_SLEEP_S, max(MIN_SLEEP_S, wait))


class Sweeper:
    def __init__(
        self,
        store: Store,
        on_flagged: asyncio.Event | None = None,
        routes: Callable[[], Routes] | None = None,
        reminders: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """``routes``: where abandoned leads go now (it changes with the REST hooks);
        ``None``: every site's webhook."""
        self.store = store
        self.on_flagged = on_flagged
        self.routes = routes
        self.reminders = reminders
        """Per site with reminder emails, what to schedule (``recovery.reminder_plans``, §11)."""
        self.unconfirmed: list[str] = []
        """Flagged sessions not yet confirmed durable, so not yet published."""

    async def sweep_once(self) -> SweepResult:
        abandoned_to = self.routes().abandoned() if self.routes is not None else None
        with metrics.SWEEP_SECONDS.time():
            result = await self.store.sweep(BATCH, abandoned_to, self.reminders)
        if result.flagged:
            log.info("sessions_abandoned count=%d late_ms=%d", len(result.flagged), result.late_ms)
            metrics.SESSIONS.labels("abandoned").inc(len(result.flagged))
            metrics.SWEEP_LAG.set(result.late_ms / 1000)
            self.unconfirmed.extend(result.flagged)
        if self.unconfirmed:
            await self._publish()
        return result

    async def _publish(self) -> None:
        """Tell widgets and the delivery loop, once the flags are confirmed (§14)."""
        problem = await self.store.durability_problem()
        if problem is not None:
            log.warning("sweep_unconfirmed count=%d reason=%s", len(self.unconfirmed), problem)
            return
        flagged, self.unconfirmed = self.unconfirmed, []
        await self.store.publish_abandoned(flagged)
        if self.on_flagged is not None:
            self.on_flagged.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop`` is set; survives Redis outages."""
        while not stop.is_set():
            try:
                result = await self.sweep_once()
            except StoreError as exc:
                log.warning("sweep_failed error=%s", exc)
                await rest(stop, 1)
                continue
            await rest(stop, pause_after(result))
