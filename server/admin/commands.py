"""What an operator can make happen (API, pages and CLI alike): replay, test events."""

from __future__ import annotations

from ..keys import EVENT_ID
from ..outbox import Outbox
from ..redis_client import Translated
from ..runtime import Runtime
from .params import QueryError

__all__ = ["replay", "send_test_event"]

_QUEUEING = Translated("queueing an event")


async def replay(runtime: Runtime, event_id: str) -> str:
    """Queue an event again: ``ok`` | ``pending`` (already queued) | ``missing``."""
    if not EVENT_ID.match(event_id):
        return "missing"
    with _QUEUEING:
        outcome = await Outbox(runtime.store).replay(event_id)
    if outcome == "ok":
        runtime.delivery_wakeup.set()
    return outcome


async def send_test_event(runtime: Runtime, site_id: str) -> str:
    """Queue a signed sample lead for ``site_id`` and wake the delivery loop.

    Raises:
        QueryError: ``site_id`` is not a configured site.
    """
    if site_id not in runtime.sites:
        raise QueryError("site", f"no site {site_id!r}")
    with _QUEUEING:
        event_id = await Outbox(runtime.store).add_test_event(site_id)
    runtime.delivery_wakeup.set()
    return event_id
