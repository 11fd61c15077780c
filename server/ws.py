"""The ``/ws`` endpoint: moves frames between a widget socket and the pure core.

Frames to a client go through a bounded queue. The connection's own reader (this
coroutine) drains it after each frame it handles; anything else (a notification from
another process's sweeper) only queues and starts a short-lived writer task. No shared
loop ever awaits a client's socket, a client that stops reading fills its queue and is
closed instead of growing memory, and an idle socket costs no task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import experiments, identity, keys, metrics, protocol, spam
from .conversation import (
    STALE_RETRIES,
    ConnState,
    Conversation,
    Reply,
    VisitorCommand,
    VisitorFrame,
)
from .errors import FrameError, StoreError
from .protocol import CloseCode, ErrorCode, Hello
from .sites import Site

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["Connection"]

log = logging.getLogger("chatlead.ws")
IDENTITY_WARN_EVERY_S = 60.0
_identity_warned: dict[str, float] = {}


def _warn_identity(site_id: str) -> None:
    """A hash that does not prove its user id: logged once a minute per site (a page
    that signs wrongly does it on every visit), without the id itself."""
    now = time.monotonic()
    if now - _identity_warned.get(site_id, -IDENTITY_WARN_EVERY_S) >= IDENTITY_WARN_EVERY_S:
        _identity_warned[site_id] = now
        log.warning(
            "identity_hash_mismatch site=%s (data-user-hash is not the HMAC-SHA256 of"
            " data-user-id under the site's identity_secret; the visitor is anonymous)",
            site_id,
        )


OUTBOX_FRAMES = 256


class Connection:
    """One widget socket: moves frames between it, the store and the :class:`Conversation`."""

    # slots: thousands of idle sockets per process (docs/BENCHMARKS.md)
    __slots__ = (
        "behind",
        "busy",
        "catching",
        "core",
        "flushing",
        "out",
        "reaper",
        "receive",
        "rt",
        "site_slot",
        "socket_id",
        "writer",
        "ws",
        "wsend",
    )

    def __init__(
        self, ws: WebSocket, runtime: Runtime, socket_id: str, receive: Receive, send: Send
    ) -> None:
        self.ws = ws  # the handshake: headers, client address
        # frames go to uvicorn directly: starlette's WebSocket adds state checks and
        # exception-handler layers to every frame, and the socket is ours after accept
        self.receive = receive
        self.wsend = send
        self.rt = runtime
        self.socket_id = socket_id
        self.site_slot: str | None = None
        self.core = Conversation(runtime.settings.msg_rate, runtime.settings.msg_burst)
        self.out: deque[str | CloseCode] = deque()
        self.writer: asyncio.Task[None] | None = None
        self.flushing = False
        self.reaper: asyncio.TimerHandle | None = None
        # One store step at a time (a visitor event, or catching up with an agent's
        # change), so the view's seq is always what the widget was sent.
        self.busy = False
        self.behind = False
        self.catching: asyncio.Task[None] | None = None

    # --- writing ------------------------------------------------------------

    def send(self, frame: str) -> None:
        """Queue a frame; a client too slow to drain its queue is closed."""
        if self.core.state is not ConnState.CLOSING:
            self._queue(frame)

    def _queue(self, frame: str) -> None:
        if len(self.out) >= OUTBOX_FRAMES:
            view = self.core.view
            log.warning("slow_client_closed session=%s", view.id if view else "-")
            self.close(CloseCode.POLICY_VIOLATION)
            return
        self.out.append(frame)

    def close(self, code: CloseCode) -> None:
        if self.core.state is ConnState.CLOSING:
            return
        self.core.advance(ConnState.CLOSING)
        self.out.append(code)

    def carry_out(self, reply: Reply) -> None:
        """Queue what the conversation decided (its state has moved already: the
        frames of a closing reply go out before its close)."""
        for frame in reply.frames:
            self._queue(frame)
        if reply.close is not None:
            self.out.append(reply.close)

    def _kick(self) -> None:
        """Flush from a task of our own: for frames queued outside the reader."""
        if not self.flushing:
            self.writer = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        """Send what is queued; one flusher at a time keeps frames in order."""
        if self.flushing:
            return
        self.flushing = True
        try:
            while self.out:
                item = self.out.popleft()
                if isinstance(item, CloseCode):
                    self.out.clear()
                    await self._write({"type": "websocket.close", "code": int(item)})
                    return
                await self._write({"type": "websocket.send", "text": item})
        finally:
            self.flushing = False

    async def _write(self, message: dict[str, Any]) -> None:
        try:
            await self.wsend(message)
        except OSError as exc:  # uvicorn: the client went away
            raise WebSocketDisconnect(1006) from exc

    # --- reading ------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._read_loop()
        except WebSocketDisconnect:
            pass
        finally:
            if self.reaper is not None:
                self.reaper.cancel()
            if self.catching is not None:
                self.catching.cancel()
            if self.core.view is not None:
                self.rt.hub.leave(self.core.view.id, self)
            if self.site_slot is not None:
                self.rt.slots.release(self.site_slot, self.socket_id)
            await self._finish_writing()

    async def _finish_writing(self) -> None:
        """Let queued frames (a close frame above all) go out, but not wait forever."""
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()
            with contextlib.suppress(BaseException):
                await self.writer
        if self.out and self.core.state is ConnState.CLOSING:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), 2)

    async def _receive_text(self) -> str | None:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            self.send(protocol.error_frame(ErrorCode.BAD_FRAME, "binary frames are not supported"))
        return text

    def _parse(self, text: str) -> protocol.ClientFrame | FrameError:
        try:
            frame: protocol.ClientFrame | FrameError = protocol.parse_client_frame(text)
        except FrameError as exc:
            frame = exc
        metrics.FRAME_COUNTERS["invalid" if isinstance(frame, FrameError) else frame.TYPE].inc()
        return frame

    async def _read_loop(self) -> None:
        try:
            text = await asyncio.wait_for(self._receive_text(), protocol.HELLO_TIMEOUT)
        except TimeoutError:
            text = None
        first = self.core.first_frame(None if text is None else self._parse(text))
        if isinstance(first, Reply):
            self.carry_out(first)
            return
        if not await self._start(first):
            return
        await self._flush()
        while self.core.state is ConnState.READY:
            text = await self._receive_text()
            if text is not None:
                await self._on_text(text)
            await self._flush()

    async def _start(self, hello: Hello) -> bool:
        core = self.core
        site = self.rt.sites.get(hello.site)
        if site is None:
            self.carry_out(core.unknown_site(hello.site))
            return False
        if not self.rt.origin_allowed(site, self.ws.headers.get("origin"), self.ws):
            self.close(CloseCode.POLICY_VIOLATION)
            return False
        try:
            if not await self._take_site_slot(site):
                return False
            if await self._resume(site, hello):
                return True
            if not await self.rt.new_sessions.admit(self._client_ip()):
                busy = "Too many new chats from your network; try again in a minute"
                self.carry_out(core.refused(ErrorCode.RATE_LIMITED, busy, CloseCode.TOO_MANY))
                return False
            if hello.session_id or hello.resume:
                self.send(
                    protocol.error_frame(ErrorCode.BAD_RESUME, "cannot resume; starting anew")
                )
            await self._create(site, hello)
        except StoreError:
            log.warning("store_unavailable_at_hello")
            self.carry_out(core.unavailable(None))
            return False
        return True

    async def _resume(self, site: Site, hello: Hello) -> bool:
        """Resume the session a resume link names (§11), else the widget's own."""
        found = await self.rt.links.resume_by_link(self.rt.store, hello, site)
        if found is None and hello.session_id and hello.resume_token:
            record = await self.rt.store.load_session(hello.session_id, hello.last_seq)
            if record is not None and (
                self.core.may_resume(record, hello, site)
                or await self.rt.links.owns(hello.resume_token, record, site)
            ):
                found = record, hello.resume_token
        if found is None:
            return False
        record, token = found
        site = site.for_session(record.page)  # the arm it was given (§12)
        offers = await self.rt.bookings.offers_for(site, record.fields, record.id)
        self.carry_out(self.core.resumed(record, site, token, int(time.time() * 1000), offers))
        self._joined()
        return True

    def _client_ip(self) -> str:
        return self.ws.client.host if self.ws.client else "-"

    async def _take_site_slot(self, site: Site) -> bool:
        slot = keys.site_slots(site.id)
        if not await self.rt.slots.acquire(slot, self.socket_id, self.rt.site_cap(site)):
            busy = "This site has too many open chats; try again shortly"
            self.carry_out(self.core.refused(ErrorCode.RATE_LIMITED, busy, CloseCode.TOO_MANY))
            return False
        self.site_slot = slot
        return True

    async def _create(self, site: Site, hello: Hello) -> None:
        who = identity.resolve(
            site.id,
            site.identity_secret,
            hello.identity,
            hello.user_id,
            "v_" + secrets.token_hex(8),
        )
        if who.mismatch:
            _warn_identity(site.id)
        user_id = who.user_id
        variant = experiments.choose(site.variants, site.id, user_id)  # never the hello's
        if variant is not None:
            site = site.for_variant(variant.name)
        site = site.for_language(hello.lang)
        new = Conversation.new_session(
            site, hello, secrets.token_hex(12), secrets.token_urlsafe(24), user_id
        )
        if variant is not None:
            new.meta["variant"] = variant.name
        if who.identified:
            new.meta["identified"] = "1"
        # the opening's question is the welcome's prompt: the same free slots
        offers = await self.rt.bookings.fill(site, new.entries, new.session_id)
        seq, now = await self.rt.store.create_session(new.session_id, new.meta, new.entries)
        if who.identified:
            await self.rt.store.remember_user(site.id, user_id, new.session_id, now)
        self.carry_out(self.core.created(new, site, seq, now, offers))
        self._joined()
        metrics.SESSIONS.labels("started").inc()
        log.info("session_started session=%s site=%s", new.session_id, site.id)

    def _joined(self) -> None:
        view = self.core.view
        assert view is not None
        self.rt.hub.join(view.id, self)
        self._reap_when_idle()

    async def _on_text(self, text: str) -> None:
        frame = self._parse(text)
        decided = self.core.frame(frame)
        if isinstance(decided, Reply):
            self.carry_out(decided)
            return
        started = time.perf_counter()
        while self.catching is not None:  # one store step at a time (see _catch_up)
            await self.catching
        self.busy = True
        try:
            for _ in range(STALE_RETRIES):
                reply = await self._store(decided)
                if not reply.retry:
                    self._stored(reply)
                    metrics.ACK_SECONDS.observe(time.perf_counter() - started)
                    return
                view = self.core.view
                assert view is not None
                self.carry_out(
                    self.core.reloaded(await self.rt.store.load_session(view.id, view.seq))
                )
                assert isinstance(frame, VisitorFrame)
                again = self.core.decide(frame)
                if isinstance(again, Reply):
                    self.carry_out(again)
                    return
                decided = again
            # still stale after every retry (others keep writing): not stored, no ack;
            # the widget resends it after reconnecting
            view = self.core.view
            log.warning("visitor_event_kept_stale session=%s", view.id if view else "-")
            self.carry_out(self.core.unavailable(decided.client_id))
        except StoreError as exc:
            view = self.core.view
            log.warning("store_unavailable session=%s error=%s", view.id if view else "-", exc)
            self.carry_out(self.core.unavailable(decided.client_id))
        finally:
            self.busy = False
            if self.behind:
                self.notify_live()

    async def _store(self, command: VisitorCommand) -> Reply:
        view = self.core.view
        assert view is not None
        site = view.site
        refused = await self.rt.bookings.hold(site, view, command)
        if refused is not None:
            return Reply((refused,))
        await self.rt.bookings.fill(site, command.bots, view.id)
        flag = command.spam
        if command.completes and site.spam.max_leads_per_ip and not flag:
            leads = await self.rt.lead_rate.completed(site.id, self._client_ip(), view.id)
            flag = spam.IP_RATE if leads > site.spam.max_leads_per_ip else ""
        result = await self.rt.store.visitor_event(
            view.id,
            command.client_id,
            command.expected_seq,
            command.visitor_entry,
            command.bots,
            command.updates,
            command.step,
            command.completes,
            self.rt.routes.to(view.site.id, "lead.completed") if command.completes else (),
            command.agent,
            command.stamp,
            flag,
            site.spam.min_fill_ms,
        )
        return self.core.stored(command, *result)

    def _stored(self, reply: Reply) -> None:
        self.carry_out(reply)
        if reply.recovered:
            metrics.SESSIONS.labels("recovered").inc()
        if reply.completed:
            view = self.core.view
            assert view is not None
            metrics.SESSIONS.labels("completed").inc()
            self.rt.delivery_wakeup.set()
            log.info("lead_completed session=%s site=%s", view.id, view.site.id)
            self._reap_when_idle()

    def notify_live(self) -> None:
        """An agent changed our session (on any process): send what the widget missed.

        Not while a visitor event is in the store (its reload or the next nudge covers
        it: ``behind`` is kept until a catch-up has read the session after it)."""
        if self.core.view is None or self.core.state is not ConnState.READY:
            return
        self.behind = True
        if not self.busy and self.catching is None:
            self.catching = asyncio.create_task(self._catch_up())

    async def _catch_up(self) -> None:
        try:
            while self.behind and self.core.state is ConnState.READY:
                self.behind = False
                view = self.core.view
                assert view is not None
                try:
                    record = await self.rt.store.load_session(view.id, view.seq)
                except StoreError:
                    return  # the widget's resume after a reconnect reads it from the store
                holder = record.holder(int(time.time() * 1000)) if record else ""
                self.carry_out(self.core.caught_up(record, holder))
                await self._flush()
        finally:
            self.catching = None

    def notify_typing(self) -> None:
        reply = self.core.agent_typing()
        if reply.frames:
            self.carry_out(reply)
            self._kick()

    def notify_abandoned(self) -> None:
        """Called from the notification listener: the sweeper flagged our session."""
        reply = self.core.abandoned()
        if reply.frames:
            self.carry_out(reply)
            self._kick()
            self._reap_when_idle()

    def _reap_when_idle(self) -> None:
        """Let a finished session's socket go once it has been quiet for the site's idle
        timeout (since the visitor's last event, or since it was abandoned): an open tab
        that only pings holds no slot for ever (the widget connects again when the
        visitor writes)."""
        left = self.core.idle_for()
        if left is None:
            return
        if left > 0:
            if self.reaper is not None:
                self.reaper.cancel()
            self.reaper = asyncio.get_running_loop().call_later(left, self._reap_when_idle)
            return
        self.carry_out(self.core.let_go())
        self._kick()
