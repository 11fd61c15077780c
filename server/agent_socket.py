"""The ``/agent`` endpoint (CONTRACT §10): an agent watches live chats and answers them.

One :class:`AgentConnection` per socket. Frames to the agent go through a bounded
queue drained by one writer task (an agent that stops reading is closed, never
buffered without end). What other processes change reaches it through
:class:`~server.live.Live`; what it changes is stored by one script each
(:class:`~server.takeover.Takeover`) before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import flow, metrics
from .admin.agent_access import agent_of, origin_ok
from .agent_protocol import (
    MAX_AGENT_FRAME,
    AgentError,
    AgentFrame,
    Join,
    Leave,
    Say,
    Typing,
    Watch,
    agent_error_frame,
    hello_frame,
    history_frame,
    parse_agent_frame,
    session_frame,
    transcript_frame,
)
from .agents import Agent
from .errors import FrameError, StoreError
from .protocol import CloseCode
from .session import SessionRecord, SessionStatus
from .units import TokenBucket

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["AgentConnection", "agent_socket"]

log = logging.getLogger("chatlead.agent")

OUT_FRAMES = 1024
"""Frames queued for one agent socket (a watch snapshot is one frame per session)."""
TOUCH_S = 10.0
"""How often a connected agent's holds are renewed (they lapse after HOLD_MS)."""
FRAME_RATE, FRAME_BURST = 20.0, 60
TYPING_EVERY_S = 1.0
SNAPSHOT_LIMIT = 500


class AgentConnection:
    """One agent socket."""

    def __init__(self, ws: WebSocket, runtime: Runtime, agent: Agent) -> None:
        self.ws = ws
        self.rt = runtime
        self.agent = agent
        self.agent_id = agent.id
        self.joined: dict[str, int] = {}
        self.joined_at: dict[str, float] = {}
        """When each join was stored (``time.monotonic()``): a read sent before it may
        predate the join and is no sign that the hold was lost."""
        """Sessions this socket holds -> the last seq it was sent."""
        self.own: set[tuple[str, int]] = set()
        """This socket's own messages (acked: not sent back as ``message``)."""
        self.watching: frozenset[str] | None = None
        self.out: asyncio.Queue[str | int] = asyncio.Queue()
        self.bucket = TokenBucket(FRAME_RATE, FRAME_BURST)
        self.strikes = 0
        self.typed: dict[str, float] = {}
        self.closing = False

    # --- what Live asks -------------------------------------------------------

    def watches(self, site_id: str) -> bool:
        return self.watching is not None and site_id in self.watching

    def seen_seq(self, session_id: str) -> int | None:
        return self.joined.get(session_id)

    def joined_sessions(self) -> list[str]:
        return list(self.joined)

    def changed(self, record: SessionRecord, now_ms: int, read_at: float) -> None:
        """A session changed somewhere: its ``session`` frame, and what it missed
        (``read_at``: when ``record`` was asked for, ``time.monotonic()``)."""
        seen = self.joined.get(record.id)
        if seen is not None or self.watches(record.site):
            self.send(session_frame(record, self.rt.sites[record.site], now_ms))
        if seen is None:
            return
        for entry in record.transcript:
            if entry["seq"] > seen and (record.id, entry["seq"]) not in self.own:
                self.send(transcript_frame(record.id, entry))
        self.own = {(s, q) for s, q in self.own if s != record.id or q > record.seq}
        self.joined[record.id] = max(seen, record.seq)
        if record.holder(now_ms) != self.agent_id and read_at > self.joined_at[record.id]:
            del self.joined[record.id]  # given back, or lapsed and taken by another
            del self.joined_at[record.id]

    def revoked(self) -> None:
        self.close(int(CloseCode.POLICY_VIOLATION))

    # --- writing --------------------------------------------------------------

    def send(self, frame: str) -> None:
        if self.closing:
            return
        if self.out.qsize() >= OUT_FRAMES:
            log.warning("slow_agent_closed agent=%s", self.agent_id)
            self.close(int(CloseCode.POLICY_VIOLATION))
            return
        self.out.put_nowait(frame)

    def close(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            self.out.put_nowait(code)

    def error(self, code: AgentError, message: str, frame_id: str | None = None) -> None:
        self.send(agent_error_frame(code, message, frame_id))

    async def _write(self) -> None:
        while True:
            item = await self.out.get()
            if isinstance(item, int):
                with contextlib.suppress(Exception):
                    await self.ws.close(item)
                return
            await self.ws.send_text(item)

    # --- the socket's life ----------------------------------------------------

    async def run(self) -> None:
        live = self.rt.live
        live.add(self)
        metrics.AGENT_SOCKETS.inc()
        writer = asyncio.create_task(self._write())
        toucher = asyncio.create_task(self._touch())
        reader = asyncio.create_task(self._read())
        try:
            self.send(hello_frame(self.agent.id, self.agent.name))
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            live.remove(self)
            metrics.AGENT_SOCKETS.dec()
            for task in (reader, toucher):
                task.cancel()
            if not writer.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(writer, 2)
            for task in (reader, toucher, writer):
                with contextlib.suppress(BaseException):
                    await task

    async def _touch(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_S)
            held = list(self.joined)
            try:
                kept = await self.rt.takeover.touch(held, self.agent_id)
            except StoreError:
                continue
            for session_id, still in zip(held, kept, strict=True):
                if not still:
                    self.rt.live.changed(session_id)

    async def _read(self) -> None:
        try:
            while not self.closing:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    self.error(AgentError.BAD_FRAME, "binary frames are not supported")
                    continue
                if len(text) > MAX_AGENT_FRAME:
                    self.close(int(CloseCode.MESSAGE_TOO_BIG))
                    return
                if not self.bucket.take():
                    self.strikes += 1
                    self.error(AgentError.RATE_LIMITED, "Slow down")
                    if self.strikes > FRAME_BURST:
                        self.close(int(CloseCode.TOO_MANY))
                    continue
                self.strikes = 0
                await self._frame(text)
        except WebSocketDisconnect:
            return

    async def _frame(self, text: str) -> None:
        try:
            frame: AgentFrame = parse_agent_frame(text)
        except FrameError as exc:
            self.error(AgentError.BAD_FRAME, str(exc), exc.frame_id)
            return
        try:
            if isinstance(frame, Watch):
                await self._watch(frame)
            elif isinstance(frame, Join):
                await self._join(frame)
            elif isinstance(frame, Leave):
                await self._leave(frame)
            elif isinstance(frame, Say):
                await self._say(frame)
            else:
                await self._typing(frame)
        except StoreError as exc:
            log.warning("agent_store_unavailable agent=%s error=%s", self.agent_id, exc)
            frame_id = frame.id if isinstance(frame, Say) else None
            self.error(AgentError.UNAVAILABLE, "could not save; try again", frame_id)

    # --- frames ---------------------------------------------------------------

    async def _watch(self, frame: Watch) -> None:
        visible = [s for s in self.rt.sites if self.agent.may_see(s)]
        wanted = visible if frame.sites is None else list(frame.sites)
        refused = [s for s in wanted if s not in visible]
        if refused:
            self.error(AgentError.FORBIDDEN, f"you may not watch site {refused[0]!r}")
            return
        self.watching = frozenset(wanted)
        await self.rt.live.ready()  # changes from now on are heard: then the snapshot
        now_ms = int(time.time() * 1000)
        for record in await self.rt.takeover.open_sessions(SNAPSHOT_LIMIT):
            if record.site in self.watching:
                self.send(session_frame(record, self.rt.sites[record.site], now_ms))

    async def _session(self, session_id: str, after: int, frame_id: str | None = None) -> Any:
        """The session if this agent may act on it, else None (the error is sent)."""
        record = await self.rt.store.load_session(session_id, after)
        if record is None:
            self.error(AgentError.SESSION_CLOSED, "this chat is gone", frame_id)
            return None
        if record.site not in self.rt.sites or not self.agent.may_see(record.site):
            self.error(AgentError.FORBIDDEN, "this chat is not one of your sites", frame_id)
            return None
        if record.status is SessionStatus.COMPLETED:
            self.error(AgentError.SESSION_CLOSED, "this chat is finished", frame_id)
            return None
        return record

    async def _join(self, frame: Join) -> None:
        record = await self._session(frame.session_id, frame.last_seq or 0)
        if record is None:
            return
        joined = await self.rt.takeover.join(record.id, self.agent.id, self.agent.name)
        if joined.kind == "taken":
            self.error(AgentError.TAKEN, f"{joined.holder_name} is answering this chat")
            return
        if joined.kind != "ok":
            self.error(AgentError.SESSION_CLOSED, "this chat is finished")
            return
        if joined.new:
            metrics.TAKEOVERS.inc()
            log.info("session_taken_over session=%s agent=%s", record.id, self.agent_id)
        for entry in record.transcript:
            self.send(transcript_frame(record.id, entry))
        if record.identified:
            rows = await self.rt.store.user_sessions(record.site, record.user_id, record.id)
            self.send(history_frame(record.id, record.user_id, rows))
        self.joined[record.id] = record.seq
        self.joined_at[record.id] = time.monotonic()
        self.rt.live.changed(record.id)  # the rest, and the session frame with its holder

    async def _leave(self, frame: Leave) -> None:
        record = await self._session(frame.session_id, -1)
        if record is None:
            return
        site = self.rt.sites[record.site].for_session(record.page)
        bots = [{"from": "bot", **say} for say in flow.resuming(site, record.fields)]
        await self.rt.bookings.fill(site, bots, record.id)
        if not await self.rt.takeover.leave(record.id, self.agent.id, bots):
            self.error(AgentError.NOT_JOINED, "you have not joined this chat")
            return
        self.joined.pop(record.id, None)
        self.joined_at.pop(record.id, None)
        log.info("session_given_back session=%s agent=%s", record.id, self.agent_id)

    async def _say(self, frame: Say) -> None:
        if frame.session_id not in self.joined:
            self.error(AgentError.NOT_JOINED, "join this chat first", frame.id)
            return
        kind, seq, waited_ms = await self.rt.takeover.message(
            frame.session_id, self.agent.id, self.agent.name, frame.id, frame.text
        )
        if kind in ("ok", "dup"):
            self.own.add((frame.session_id, seq))
            self.send(orjson.dumps({"type": "ack", "id": frame.id, "seq": seq}).decode())
            if kind == "ok":
                metrics.MESSAGES.labels("agent").inc()
                if waited_ms:
                    metrics.AGENT_FIRST_RESPONSE.observe(waited_ms / 1000)
            return
        if kind == "not_joined":
            self.joined.pop(frame.session_id, None)
            self.joined_at.pop(frame.session_id, None)
            self.error(AgentError.NOT_JOINED, "you no longer hold this chat", frame.id)
        elif kind == "full":
            self.error(AgentError.BAD_FRAME, "this conversation is too long", frame.id)
        else:
            self.error(AgentError.SESSION_CLOSED, "this chat is finished", frame.id)

    async def _typing(self, frame: Typing) -> None:
        if frame.session_id not in self.joined:
            self.error(AgentError.NOT_JOINED, "join this chat first")
            return
        now = time.monotonic()
        if now - self.typed.get(frame.session_id, 0.0) < TYPING_EVERY_S:
            return
        self.typed[frame.session_id] = now
        await self.rt.notify({"typing": frame.session_id})


async def agent_socket(ws: WebSocket) -> None:
    """``GET /agent``: check the origin and who it is, then serve the socket."""
    runtime: Runtime = ws.app.state.runtime
    if not origin_ok(ws, runtime):
        await ws.close(int(CloseCode.POLICY_VIOLATION))  # before accept: HTTP 403
        return
    try:
        agent = await agent_of(ws, runtime)
    except StoreError:
        await ws.close(int(CloseCode.SERVICE_RESTART))
        return
    if agent is None:
        await ws.close(int(CloseCode.POLICY_VIOLATION))
        return
    await ws.accept()
    await AgentConnection(ws, runtime, agent).run()
