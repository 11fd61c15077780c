"""The delivery loop: claim due events, send them, record the outcome.

Read it like a worker: poll (or wake) -> claim -> build the lead -> send in the
site's format -> settle (delivered | retry at the next scheduled time | dead).
At-least-once: an event is only settled after its attempt, so a process killed
mid-send leaves it claimed until its lease ends, then it is sent again with the
same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from . import formats, keys, metrics
from .errors import DeliveryError, StoreError
from .formats import LeadEvent, SendResult, guard, reminder
from .hooks import Hooks, hook_id_of
from .lead import build_lead
from .loops import rest
from .outbox import Claim, EventRecord, Outbox
from .recovery import REMINDER_EVENT_TYPE
from .resume_keys import ResumeLinks
from .session import SessionRecord
from .sites import Destination, Site
from .store import Store

__all__ = ["Deliverer", "Outgoing", "next_delay", "sample_lead"]

log = logging.getLogger("chatlead.delivery")

POLL_S = 0.25
CONCURRENCY = 32
REQUEST_TIMEOUT_S = 15.0
PER_DESTINATION = CONCURRENCY // 2
"""Most attempts in flight to one destination (site, name): one that hangs holds at most
these slots, the others keep theirs."""
BUSY_DEFER_S = 0.5
"""How long an event waits, unattempted, while its destination has every slot it may."""


def next_delay(
    schedule: tuple[float, ...], attempts_done: int, retry_after: float | None, jitter: float
) -> float | None:
    """Seconds until the next attempt, or None when the schedule is used up.

    ``schedule[0]`` is the first attempt (immediately); after the n-th failed
    attempt the wait is ``schedule[n]`` (+/- ``jitter`` fraction), at least the
    server's ``Retry-After``.
    """
    if attempts_done >= len(schedule):
        return None
    delay = schedule[attempts_done] * (1 + jitter)
    return max(delay, retry_after or 0.0)


def sample_lead(site: Site, event_id: str) -> dict[str, Any]:
    """The lead of a ``lead.test`` event: obviously fake, shaped like the real thing."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "userId": "v_test",
        "sessionId": keys.event_session(event_id),
        "fields": [
            {"name": "name", "value": "Test Lead"},
            {"name": "email", "value": "test.lead@example.com"},
            {"name": "phone", "value": "+12025550143"},
            {"name": "message", "value": "This is a test lead from chatlead."},
        ],
        "source": site.source,
        "transcript": [
            {
                "createdTime": now,
                "from": {"id": "bot"},
                "to": [{"id": "v_test"}],
                "message": "This is a test event.",
                "attributes": {"seq": 1},
            }
        ],
        "isAbandoned": False,
        **({"company": site.company} if site.company else {}),
    }


@dataclass(frozen=True)
class Outgoing:
    """Settings of what leaves besides HTTP: links' base (``PUBLIC_URL``) and mail."""

    public_url: str = "http://127.0.0.1:8000"
    smtp_url: str | None = None
    smtp_from: str | None = None


class _Clients:
    """The HTTP clients of one concurrent attempt.

    ``public`` connects only to public addresses, checked as it connects (DNS
    rebinding cannot move it); ``private`` is for sites with ``allow_private``.
    Separate pools, so a connection made under one policy never serves the other.
    """

    def __init__(self) -> None:
        self.public = guard.pinned_client(REQUEST_TIMEOUT_S, public_only=True)
        self.private = guard.pinned_client(REQUEST_TIMEOUT_S, public_only=False)

    async def aclose(self) -> None:
        await self.public.aclose()
        await self.private.aclose()


class Deliverer:
    def __init__(
        self,
        store: Store,
        sites: dict[str, Site],
        schedule: tuple[float, ...],
        wakeup: asyncio.Event,
        outgoing: Outgoing | None = None,
        hooks: Hooks | None = None,
        links: ResumeLinks | None = None,
    ) -> None:
        self.store = store
        self.links = links
        self.outgoing = outgoing or Outgoing()
        self.hooks = hooks
        self.outbox = Outbox(store)
        self.sites = sites
        self.schedule = schedule
        self.wakeup = wakeup
        # One client per concurrent attempt: a single httpx pool shared by many
        # concurrent requests gets slower per request (see docs/BENCHMARKS.md).
        self._clients = [_Clients() for _ in range(CONCURRENCY)]
        self._idle: asyncio.Queue[_Clients] = asyncio.Queue()
        for clients in self._clients:
            self._idle.put_nowait(clients)
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy: Counter[tuple[str, str]] = Counter()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set (and ``wakeup`` with it); survives Redis outages."""
        try:
            while not stop.is_set():
                # cleared before claiming: a wake-up during the claim is not lost
                self.wakeup.clear()
                claims = await self._claim(stop)
                for claim in claims:
                    http = await self._idle.get()
                    task = asyncio.create_task(self._deliver(claim, http))
                    self._inflight.add(task)
                    task.add_done_callback(functools.partial(self._done, http))
                if not claims and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_S):
                            await self.wakeup.wait()
        finally:
            await self.drain()
            for clients in self._clients:
                await clients.aclose()

    def _done(self, http: _Clients, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._idle.put_nowait(http)

    async def drain(self, timeout: float = 20.0) -> None:
        """Let in-flight attempts finish (graceful shutdown)."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    async def _claim(self, stop: asyncio.Event) -> list[Claim]:
        try:
            # claim about as many as there are free slots, so claims don't wait
            # behind slow targets long enough for their lease to run out
            return await self.outbox.claim(limit=self._idle.qsize() // self.store.shards + 1)
        except StoreError as exc:
            log.warning("outbox_unavailable error=%s", exc)
            await rest(stop, 1)
            return []

    async def _deliver(self, claim: Claim, http: _Clients) -> None:
        try:
            event, session = await self.outbox.load_with_session(claim.event_id)
            if event is None:
                return
            destination = (event.site, keys.event_destination(event.id))
            if self._busy[destination] >= PER_DESTINATION:
                # a slow or hanging destination may not take every slot from the others
                await self.outbox.settle(claim, "defer", {}, delay_s=BUSY_DEFER_S)
                return
            self._busy[destination] += 1
            try:
                await self._attempt(claim, event, session, http)
            finally:
                self._busy[destination] -= 1
        except Exception:  # a bug here must not stop the loop; the lease brings it back
            log.exception("delivery_crashed id=%s", claim.event_id)

    async def _destination(self, site: Site, name: str) -> Destination | None:
        destination = site.destination(name)
        if destination is not None or self.hooks is None or hook_id_of(name) is None:
            return destination
        found = self.hooks.destination(name)
        if found is None:  # subscribed a moment ago in another process?
            await self.hooks.load()
            found = self.hooks.destination(name)
        return found

    async def _lead_event(
        self, event: EventRecord, record: SessionRecord | None
    ) -> LeadEvent | str:
        site = self.sites.get(event.site)
        if site is None:
            return f"site {event.site!r} is no longer configured"
        name = keys.event_destination(event.id)
        destination = await self._destination(site, name)
        if destination is None:
            if hook_id_of(name) is not None:
                return "unsubscribed: the hook was deleted"
            return f"destination {name!r} of site {site.id!r} is no longer configured"
        resume_url = None
        if event.type == "lead.test":
            lead = sample_lead(site, event.id)
        else:
            if record is None:
                return "session data is gone (expired or erased)"
            abandoned = event.type == "lead.abandoned"
            suffix = destination.event_suffix()
            shown = site.for_session(record.page)  # its flow orders the lead
            lead = build_lead(record, shown, abandoned=abandoned, suffix=suffix)
            if (abandoned or event.type == REMINDER_EVENT_TYPE) and self.links is not None:
                resume_url = await self.links.url(record)  # §11
        created = datetime.fromtimestamp(event.created_ms / 1000, UTC)
        return LeadEvent(event.id, event.type, created, site, lead, destination, resume_url)

    async def _attempt(
        self,
        claim: Claim,
        event: EventRecord,
        record: SessionRecord | None,
        http: _Clients,
    ) -> None:
        if event.type == REMINDER_EVENT_TYPE:
            skip = await self._reminder_skip(event, record)
            if skip is not None:  # settled with nothing sent (CONTRACT §11)
                result = SendResult(ok=True, retryable=False, response_snippet=skip)
                await self._settle(claim, event, result, 0)
                return
        lead_event = await self._lead_event(event, record)
        if isinstance(lead_event, str):
            await self._settle(
                claim, event, SendResult(ok=False, retryable=False, error=lead_event), 0
            )
            return
        started = time.perf_counter()
        try:
            result = await self._send(lead_event, http)
        except DeliveryError as exc:
            result = SendResult(ok=False, retryable=False, error=str(exc))
        except httpx.TimeoutException:
            result = SendResult(ok=False, retryable=True, error="timeout")
        except httpx.HTTPError as exc:
            result = SendResult(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
        latency_ms = (time.perf_counter() - started) * 1000
        if result.status_code == 410 and self.hooks is not None:
            hook_id = hook_id_of(lead_event.destination.name)
            if hook_id is not None:  # the target asks to be unsubscribed (REST hooks)
                await self.hooks.remove(hook_id)
                result = replace(result, retryable=False, error="410 Gone: hook unsubscribed")
        await self._settle(claim, event, result, latency_ms)

    async def _reminder_skip(self, event: EventRecord, record: SessionRecord | None) -> str | None:
        site = self.sites.get(event.site)
        if site is None or site.recovery is None:
            return None  # dead with its reason in _lead_event
        shard = self.store.shard(keys.event_session(event.id))
        why = await reminder.skip_reason(self.store.redis, shard, event.id, record, site)
        return None if why is None else f"not sent: {why}"

    async def _send(self, event: LeadEvent, http: _Clients) -> SendResult:
        destination = event.destination
        if destination.is_inbox:
            pushed = await self.outbox.push_inbox(
                {"id": event.id, "type": event.type, "site": event.site.id, "data": event.lead}
            )
            if not pushed:
                return SendResult(ok=False, retryable=False, error="erased")
            return SendResult(ok=True, retryable=False, status_code=None)
        declared = formats.get(destination.format)
        target = declared.target_of(destination)
        if target is not None:
            guard.check_url(target, destination.allow_private)
        # the public client checks each address it connects to, at send time
        client = http.private if destination.allow_private else http.public
        out = self.outgoing
        ctx = formats.Context(client, self.store.redis, out.public_url, out.smtp_url, out.smtp_from)
        return await declared.send(ctx, event)

    async def _settle(
        self, claim: Claim, event: EventRecord, result: SendResult, latency_ms: float
    ) -> None:
        attempt = {
            "status_code": result.status_code,
            "latency_ms": round(latency_ms, 1),
            "error": result.error,
            "response": result.response_snippet[:300],
        }
        done = len(event.attempts) + 1
        if not result.sent:
            await self.outbox.settle(claim, "defer", attempt, delay_s=result.retry_after or 1.0)
            return
        if result.ok:
            outcome, delay = "delivered", 0.0
        else:
            wait = (
                next_delay(self.schedule, done, result.retry_after, random.uniform(-0.1, 0.1))
                if result.retryable
                else None
            )
            outcome, delay = ("retry", wait) if wait is not None else ("dead", 0.0)
        await self.outbox.settle(claim, outcome, attempt, delay_s=delay, ref_id=result.ref_id)
        metrics.DELIVERIES.labels(outcome).inc()
        metrics.DELIVERY_SECONDS.observe(latency_ms / 1000)
        log.info(
            "delivery id=%s outcome=%s status=%s attempt=%d latency_ms=%.0f",
            event.id,
            outcome,
            result.status_code,
            done,
            latency_ms,
        )
