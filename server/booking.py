"""Booked appointment slots in Redis (CONTRACT §12, Slots): what is offered, and holding
one so that two visitors cannot book the same.

A booking is ``booking:<site>:<slot start>`` -> the session id that holds it (its own
slot, so any process and any Cluster node agrees). It is held while that session is open
or completed; a session that was abandoned or is gone gives it up to the next visitor
who picks it (``book.lua`` replaces it only if it still names the session we saw).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import flow, keys, protocol
from .availability import Slot, free_slots, slot_at
from .decisions import SessionView, VisitorCommand
from .protocol import ErrorCode
from .redis_client import Translated
from .sites import FieldKind, Site
from .store import Store

__all__ = ["Bookings", "CANDIDATES"]

CANDIDATES = 60
"""Slots looked at for one offer (the first ``offer`` of them that nobody holds)."""
_HOLDING = ("open", "completed")


class Bookings:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self._book = store.redis.register_script(
            "local now = redis.call('GET', KEYS[1])\n"
            "if now and now ~= ARGV[1] and now ~= ARGV[2] then return 0 end\n"
            "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
            "return 1"
        )
        self._release = store.redis.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"
        )

    async def _holding(self, sessions: Sequence[str]) -> list[bool]:
        """Whether each of ``sessions`` still holds its bookings (open or completed)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sessions:
                pipe.hget(keys.session(self.store.shard(sid), sid), "status")
            status = await pipe.execute()
        return [st in _HOLDING for st in status]

    async def _holders(self, site: str, values: Sequence[str]) -> dict[str, str]:
        """Who holds each of ``values`` now (an open or completed session), by value."""
        if not values:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for value in values:
                pipe.get(keys.booking(site, value))
            named = await pipe.execute()
        booked = {v: sid for v, sid in zip(values, named, strict=True) if sid}
        if not booked:
            return {}
        holding = await self._holding(list(booked.values()))
        return {v: sid for (v, sid), held in zip(booked.items(), holding, strict=True) if held}

    async def offer(self, site: Site, session_id: str) -> list[Slot]:
        """The next free slots for ``session_id`` (its own booking counts as free)."""
        av = site.availability
        assert av is not None
        with Translated("reading the free slots"):
            now = await self.store.now_ms()
            candidates = free_slots(av, now, set(), CANDIDATES)
            held = await self._holders(site.id, [s.value for s in candidates])
        taken = {v for v, sid in held.items() if sid != session_id}
        return [s for s in candidates if s.value not in taken][: av.offer]

    async def book(self, site: Site, value: str, session_id: str) -> Slot | None:
        """Hold slot ``value`` for ``session_id``; the slot, or None when it is not one
        the grid offers now or someone else holds it."""
        av = site.availability
        assert av is not None
        key = keys.booking(site.id, value)
        with Translated("booking a slot"):
            slot = slot_at(av, value, await self.store.now_ms())
            if slot is None:
                return None
            seen = await self.redis.get(key)
            if seen and seen != session_id and (await self._holding([str(seen)]))[0]:
                return None  # held by an open or completed session
            args = [seen or session_id, session_id, self.store.retention_ms]
            done = await self._book(keys=[key], args=args)
        return slot if done == 1 else None

    async def offers_for(
        self, site: Site, fields: dict[str, str], session_id: str
    ) -> list[dict[str, str]] | None:
        """The free slots when the next question is a slot step, else None."""
        step = flow.next_step(site, fields)
        if step is None or step.kind is not FieldKind.SLOT:
            return None
        return [s.option() for s in await self.offer(site, session_id)]

    async def hold(self, site: Site, view: SessionView, command: VisitorCommand) -> str | None:
        """Hold the slot a slot answer of ``command`` picks; None when it is held (or
        the event picks none), else the ``invalid_field`` frame with the next free slots
        (the slot is off the grid, or someone else holds it)."""
        steps = (site.steps_by_field.get(name) for name in command.updates)
        step = next((s for s in steps if s is not None and s.kind is FieldKind.SLOT), None)
        value = command.updates.get(step.field, "") if step else ""
        if step is None or not value:
            return None
        slot = await self.book(site, value, view.id)
        if slot is not None:
            if command.visitor_entry is not None:
                command.visitor_entry["text"] = slot.label  # as the visitor read it
            before = view.fields.get(step.field)
            if before and before != value:  # a changed answer gives the first slot up
                await self.release(site.id, before, view.id)
            return None
        prompt = flow.prompt_of(step)
        prompt["options"] = [s.option() for s in await self.offer(site, view.id)]
        gone = "That time is no longer free; please pick another"
        return protocol.error_frame(ErrorCode.INVALID_FIELD, gone, command.client_id, prompt)

    async def release(self, site_id: str, value: str, session_id: str) -> None:
        """Give slot ``value`` up if ``session_id`` holds it."""
        key = keys.booking(site_id, value)
        with Translated("giving a slot up"):
            await self._release(keys=[key], args=[session_id])

    async def fill(
        self, site: Site, entries: Sequence[dict[str, Any]], session_id: str
    ) -> list[dict[str, str]] | None:
        """Put the free slots into the slot prompt of ``entries`` (bot messages), if one
        asks; those slots, else None."""
        for entry in entries:
            prompt = entry.get("prompt")
            if prompt and prompt.get("kind") == FieldKind.SLOT.value:
                prompt["options"] = [s.option() for s in await self.offer(site, session_id)]
                return list(prompt["options"])
        return None
