"""What an operator can make happen (API, pages and CLI alike): replay, test events."""

from __future__ import annotations

import json

from .. import keys
from ..keys import EVENT_ID
from ..outbox import Outbox
from ..redis_client import Translated
from ..runtime import Runtime
from .params import QueryError

__all__ = ["release", "replay", "send_test_event"]

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


async def send_test_event(
    runtime: Runtime, site_id: str, destination: str | None = None
) -> list[str]:
    """Queue a signed sample lead for ``site_id`` to each of its destinations (or the one
    named ``destination``) and wake the delivery loop; the event ids.

    Raises:
        QueryError: ``site_id`` is not a configured site, or it has no such destination.
    """
    site = runtime.sites.get(site_id)
    if site is None:
        raise QueryError("site", f"no site {site_id!r}")
    targets = site.destinations
    if destination is not None:
        targets = tuple(d for d in targets if d.name == destination)
        if not targets:
            names = ", ".join(d.name for d in site.destinations)
            raise QueryError(
                "destination", f"no destination {destination!r}; {site_id} has {names}"
            )
    with _QUEUEING:
        ids = await Outbox(runtime.store).add_test_event(
            site_id, [d.event_suffix() for d in targets]
        )
    runtime.delivery_wakeup.set()
    return ids


async def release(runtime: Runtime, session_id: str) -> str:
    """Forward a session flagged spam to its site's destinations (CONTRACT §12):
    ``released`` | ``not_spam`` | ``gone``."""
    store = runtime.store
    shard = store.shard(session_id)
    record_site = await store.redis.hget(keys.session(shard, session_id), "site")
    routes = runtime.routes
    site = str(record_site or "")
    args: list[str | int] = [
        keys.tag(shard),
        session_id,
        store.retention_ms,
        keys.completed_event(session_id),
        json.dumps(list(routes.to(site, "lead.completed"))),
        keys.ABANDONED_EVENT,
        json.dumps(list(routes.to(site, "lead.abandoned"))),
    ]
    with _QUEUEING:
        outcome = await store.script("release")(keys=[keys.session(shard, session_id)], args=args)
    if outcome == "released":
        runtime.delivery_wakeup.set()
    return str(outcome)
