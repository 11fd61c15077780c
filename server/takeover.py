"""Agents' changes to sessions in Redis (CONTRACT §10), next to :class:`~.store.Store`.

Each change is one Lua script on the session's shard: taking a session over
(``agent_join.lua``), giving it back (``agent_leave.lua``), an agent's message
(``agent_message.lua``: seq, transcript, activity, in one step, acknowledged only
after it is stored and, under ``DURABILITY``, confirmed), keeping a hold alive
(``agent_touch.lua``) and the ``visitor.waiting`` event (``visitor_waiting.lua``).
Every script that changes what a visitor sees nudges the other processes itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from . import keys
from .redis_client import Translated
from .scripts import run_each, script_source
from .session import SessionRecord, SessionStatus
from .sites import Route
from .store import MAX_TRANSCRIPT, MAX_TRANSCRIPT_BYTES, Store

__all__ = ["Joined", "Takeover", "agent_client_id"]


@dataclass(frozen=True)
class Joined:
    """What ``join`` answered: ``kind`` ok, taken, closed or gone."""

    kind: str
    seq: int = 0
    new: bool = False
    """The session was not held by this agent before (a take-over, not a re-join)."""
    holder: str = ""
    holder_name: str = ""


def agent_client_id(agent_id: str, frame_id: str) -> str:
    """An agent's frame id in the session's dedupe hash (apart from the visitor's)."""
    return f"a:{agent_id}:{frame_id}"


class Takeover:
    """Agents' script calls on the store's Redis."""

    def __init__(self, store: Store) -> None:
        self.store = store
        client = store.cluster or store.redis
        self._scripts = {
            name: client.register_script(script_source(name))
            for name in (
                "agent_join",
                "agent_leave",
                "agent_message",
                "agent_touch",
                "visitor_waiting",
            )
        }

    async def _run(self, name: str, keys_: list[str], args: list[Any], *, confirm: bool) -> Any:
        plan = self.store.plan if confirm else None
        with Translated(f"in {name}"):
            replies = await run_each(self.store.redis, self._scripts[name], [(keys_, args)], plan)
        return replies[0]

    def _session(self, session_id: str) -> tuple[int, str]:
        shard = self.store.shard(session_id)
        return shard, keys.session(shard, session_id)

    async def join(self, session_id: str, agent_id: str, name: str) -> Joined:
        _, session = self._session(session_id)
        reply = await self._run("agent_join", [session], [session_id, agent_id, name], confirm=True)
        if reply[0] == "ok":
            return Joined("ok", int(reply[1]), reply[2] == 1)
        if reply[0] == "taken":
            return Joined("taken", holder=reply[1], holder_name=reply[2])
        return Joined(reply[0])

    async def leave(self, session_id: str, agent_id: str, bots: list[dict[str, Any]]) -> bool:
        """Give the session back, the bot asking ``bots``; False: not held by this agent."""
        shard, session = self._session(session_id)
        reply = await self._run(
            "agent_leave",
            [session, keys.transcript(shard, session_id)],
            [session_id, agent_id, json.dumps(bots)],
            confirm=True,
        )
        return bool(reply[0] == "ok")

    async def message(
        self, session_id: str, agent_id: str, name: str, frame_id: str, text: str
    ) -> tuple[str, int, int]:
        """Store an agent's message: ``(kind, seq, ms the visitor had waited for it)``;
        kind ok, dup, gone, closed, not_joined or full."""
        shard, session = self._session(session_id)
        event = {
            "id": agent_client_id(agent_id, frame_id),
            "agent": agent_id,
            "name": name,
            "text": text,
            "max": MAX_TRANSCRIPT,
            "max_bytes": MAX_TRANSCRIPT_BYTES,
        }
        reply = await self._run(
            "agent_message",
            [
                session,
                keys.transcript(shard, session_id),
                keys.client_ids(shard, session_id),
                keys.deadlines(shard),
            ],
            [session_id, self.store.retention_ms, keys.tag(shard), orjson.dumps(event)],
            confirm=True,
        )
        if reply[0] == "ok":
            waited = int(reply[2]) - int(reply[3]) if int(reply[3]) else 0
            return "ok", int(reply[1]), waited
        return str(reply[0]), int(reply[1]) if len(reply) > 1 else 0, 0

    async def touch(self, session_ids: Sequence[str], agent_id: str) -> list[bool]:
        """Keep this agent's holds; per session, whether it still holds it."""
        if not session_ids:
            return []
        calls = [([self._session(sid)[1]], [agent_id]) for sid in session_ids]
        with Translated("in agent_touch"):
            replies = await run_each(self.store.redis, self._scripts["agent_touch"], calls)
        return [reply == 1 for reply in replies]

    async def waiting(self, session_id: str, wait_s: float, routes: Sequence[Route]) -> bool:
        """Write ``visitor.waiting`` if the visitor has waited ``wait_s`` for an agent."""
        shard, session = self._session(session_id)
        reply = await self._run(
            "visitor_waiting",
            [session],
            [
                session_id,
                self.store.retention_ms,
                keys.tag(shard),
                int(wait_s * 1000),
                keys.WAITING_EVENT,
                json.dumps(list(routes)),
            ],
            confirm=False,
        )
        return bool(reply == 1)

    async def open_sessions(self, limit: int) -> list[SessionRecord]:
        """Open sessions (with their last transcript entry), newest activity first."""
        store = self.store
        with Translated("listing open sessions"):
            async with store.redis.pipeline(transaction=False) as pipe:
                for shard in range(store.shards):
                    pipe.zrange(keys.deadlines(shard), 0, limit - 1, desc=True)
                per_shard = await pipe.execute()
            ids = [sid for shard_ids in per_shard for sid in shard_ids]
            replies = await asyncio.gather(*(store.read(store.session_reads(s, -1)) for s in ids))
        records = [Store.session_from(sid, r) for sid, r in zip(ids, replies, strict=True)]
        live = [r for r in records if r is not None and r.status is SessionStatus.OPEN]
        live.sort(key=lambda r: r.active_ms, reverse=True)
        return live[:limit]
