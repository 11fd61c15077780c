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
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from server import flow, keys, metrics, protocol
from server.config import Site
from server.errors import FieldInvalid, FrameError, StoreError
from server.limits import client_network
from server.protocol import CloseCode, FieldAnswer, Hello, Ping, Submit, VisitorMessage
from server.session import SessionRecord, SessionStatus, page_meta
from server.store import VisitorResult

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = ["WidgetSocket"]

log = logging.getLogger("chatlead.ws")

OUTBOX_FRAMES = 256
STALE_RETRIES = 3


class ConnState(Enum):
    AWAITING_HELLO = "awaiting_hello"
    READY = "ready"
    CLOSING = "closing"


@dataclass(slots=True)
class SessionView:
    """What this connection knows of its session; the store stays the authority."""

    id: str
    site: Site
    seq: int
    status: SessionStatus
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, record: SessionRecord, site: Site) -> SessionView:
        return cls(record.id, site, record.seq, record.status, dict(record.fields))

    def prompt(self) -> dict[str, Any] | None:
        if self.status is SessionStatus.COMPLETED:
            return None
        step = flow.next_step(self.site, self.fields)
        return flow.prompt_of(step) if step else None


class TokenBucket:
    """``rate`` frames per second with bursts of ``burst`` (per connection)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _visitor_entry(frame: VisitorMessage | FieldAnswer, value: str) -> dict[str, Any]:
    if isinstance(frame, VisitorMessage):
        return {"from": "visitor", "text": frame.text}
    return {"from": "visitor", "text": value or "(skipped)", "field": frame.name}


def _frame_id(frame: protocol.ClientFrame | FrameError) -> str | None:
    if isinstance(frame, FrameError):
        return frame.frame_id
    return frame.id if isinstance(frame, VisitorMessage | FieldAnswer | Submit) else None


class Connection:
    # slots: thousands of idle sockets per process (docs/BENCHMARKS.md)
    __slots__ = (
        "quiet_since",
        "bucket",
        "flushing",
        "out",
        "reaper",
        "receive",
        "rt",
        "site_slot",
        "socket_id",
        "state",
        "strikes",
        "view",
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
        self.state = ConnState.AWAITING_HELLO
        self.view: SessionView | None = None
        self.out: deque[str | CloseCode] = deque()
        self.writer: asyncio.Task[None] | None = None
        self.flushing = False
        self.bucket = TokenBucket(runtime.settings.msg_rate, runtime.settings.msg_burst)
        self.strikes = 0
        self.quiet_since = time.monotonic()  # the last visitor event, or the session's end
        self.reaper: asyncio.TimerHandle | None = None

    # --- writing ------------------------------------------------------------

    def send(self, frame: str) -> None:
        """Queue a frame; a client too slow to drain its queue is closed."""
        if self.state is ConnState.CLOSING:
            return
        if len(self.out) >= OUTBOX_FRAMES:
            log.warning("slow_client_closed session=%s", self.view.id if self.view else "-")
            self.close(CloseCode.POLICY_VIOLATION)
            return
        self._enqueue(frame)

    def close(self, code: CloseCode) -> None:
        if self.state is ConnState.CLOSING:
            return
        self.state = ConnState.CLOSING
        self._enqueue(code)

    def _enqueue(self, item: str | CloseCode) -> None:
        self.out.append(item)

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
            if self.view is not None:
                self.rt.hub.leave(self.view.id, self)
            if self.site_slot is not None:
                self.rt.slots.release(self.site_slot, self.socket_id)
            await self._finish_writing()

    async def _finish_writing(self) -> None:
        """Let queued frames (a close frame above all) go out, but not wait forever."""
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()
            with contextlib.suppress(BaseException):
                await self.writer
        if self.out and self.state is ConnState.CLOSING:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), 2)

    async def _receive_text(self) -> str | None:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            self.send(protocol.error_frame("bad_frame", "binary frames are not supported"))
        return text

    async def _read_loop(self) -> None:
        try:
            text = await asyncio.wait_for(self._receive_text(), protocol.HELLO_TIMEOUT)
        except TimeoutError:
            self.close(CloseCode.NO_HELLO)
            return
        hello = self._parse_hello(text)
        if hello is None or not await self._start(hello):
            return
        self.state = ConnState.READY
        await self._flush()
        while self.state is ConnState.READY:
            text = await self._receive_text()
            if text is not None:
                await self._on_text(text)
            await self._flush()

    def _parse_hello(self, text: str | None) -> Hello | None:
        try:
            frame = protocol.parse_client_frame(text or "")
        except FrameError as exc:
            self.send(protocol.error_frame("bad_frame", str(exc)))
            frame = None
        metrics.FRAME_COUNTERS["invalid" if frame is None else frame.TYPE].inc()
        if not isinstance(frame, Hello):
            if frame is not None:
                self.send(protocol.error_frame("bad_frame", "the first frame must be hello"))
            self.close(CloseCode.NO_HELLO)
            return None
        return frame

    async def _start(self, hello: Hello) -> bool:
        site = self.rt.sites.get(hello.site)
        if site is None:
            self.send(protocol.error_frame("unknown_site", f"no site {hello.site!r}"))
            self.close(CloseCode.UNKNOWN_SITE)
            return False
        if not self.rt.origin_allowed(site, self.ws.headers.get("origin"), self.ws):
            self.close(CloseCode.POLICY_VIOLATION)
            return False
        try:
            if not await self._take_site_slot(site):
                return False
            if hello.session_id and hello.resume_token and await self._resume(site, hello):
                return True
            if not await self.rt.new_sessions.admit(self._client_ip()):
                busy = "Too many new chats from your network; try again in a minute"
                self.send(protocol.error_frame("rate_limited", busy))
                self.close(CloseCode.TOO_MANY)
                return False
            if hello.session_id:
                self.send(protocol.error_frame("bad_resume", "cannot resume; starting anew"))
            await self._create(site, hello)
        except StoreError:
            log.warning("store_unavailable_at_hello")
            self.send(protocol.error_frame("unavailable", "try again shortly"))
            self.close(CloseCode.SERVICE_RESTART)
            return False
        return True

    def _client_ip(self) -> str:
        return self.ws.client.host if self.ws.client else "-"

    async def _take_site_slot(self, site: Site) -> bool:
        slot = keys.site_slots(site.id)
        if not await self.rt.slots.acquire(slot, self.socket_id, self.rt.site_cap(site)):
            busy = "This site has too many open chats; try again shortly"
            self.send(protocol.error_frame("rate_limited", busy))
            self.close(CloseCode.TOO_MANY)
            return False
        self.site_slot = slot
        return True

    async def _resume(self, site: Site, hello: Hello) -> bool:
        assert hello.session_id and hello.resume_token
        record = await self.rt.store.load_session(hello.session_id, hello.last_seq)
        if (
            record is None
            or not hmac.compare_digest(record.token_hash, _token_hash(hello.resume_token))
            or record.site != site.id
        ):
            return False
        self.view = SessionView.of(record, site)
        self.rt.hub.join(record.id, self)
        self._reap_when_idle()
        self.send(
            protocol.welcome_frame(
                session_id=record.id,
                resume_token=hello.resume_token,
                status=record.status.value,
                resumed=True,
                seq=record.seq,
                transcript=list(record.transcript),
                fields=record.fields,
                prompt=self.view.prompt(),
                user_id=record.user_id,
            )
        )
        return True

    async def _create(self, site: Site, hello: Hello) -> None:
        session_id = secrets.token_hex(12)
        token = secrets.token_urlsafe(24)
        user_id = hello.user_id or "v_" + secrets.token_hex(8)
        first = flow.next_step(site, {})
        meta = {
            "site": site.id,
            "idle": str(int(site.idle_timeout * 1000)),
            "fwd": site.forward_abandoned.value,
            "tok": _token_hash(token),
            "uid": user_id,
            "step": first.field if first else flow.DONE,
            **({"source": hello.source} if hello.source else {}),
            **page_meta(hello.page.url, hello.page.referrer),
        }
        entries = [{"from": "bot", **reply} for reply in flow.opening(site, {})]
        seq, now = await self.rt.store.create_session(session_id, meta, entries)
        for number, entry in enumerate(entries, start=1):
            entry.update(seq=number, ts=now)
        self.view = SessionView(session_id, site, seq, SessionStatus.OPEN)
        self.rt.hub.join(session_id, self)
        self.send(
            protocol.welcome_frame(
                session_id=session_id,
                resume_token=token,
                status=SessionStatus.OPEN.value,
                resumed=False,
                seq=seq,
                transcript=entries,
                fields={},
                prompt=self.view.prompt(),
                user_id=user_id,
            )
        )
        metrics.SESSIONS.labels("started").inc()
        log.info("session_started session=%s site=%s", session_id, site.id)

    async def _on_text(self, text: str) -> None:
        try:
            frame: protocol.ClientFrame | FrameError = protocol.parse_client_frame(text)
        except FrameError as exc:
            frame = exc
        # every frame counts against the bucket, pings and garbage included
        if not self.bucket.take():
            self._rate_limited(_frame_id(frame))
            return
        self.strikes = 0
        if isinstance(frame, FrameError):
            metrics.FRAME_COUNTERS["invalid"].inc()
            self.send(protocol.error_frame("bad_frame", str(frame), frame.frame_id))
            return
        metrics.FRAME_COUNTERS[frame.TYPE].inc()
        if isinstance(frame, Ping):
            self.send(protocol.pong_frame())
        elif isinstance(frame, Hello):
            self.send(protocol.error_frame("bad_frame", "hello was already received"))
        else:
            await self._visitor_event(frame)

    def _rate_limited(self, frame_id: str | None) -> None:
        """Refuse one frame (no ack: the widget resends it later); close a flood."""
        self.strikes += 1
        self.send(protocol.error_frame("rate_limited", "Slow down", frame_id))
        if self.strikes > self.rt.settings.msg_burst:
            self.close(CloseCode.TOO_MANY)

    async def _visitor_event(self, frame: VisitorMessage | FieldAnswer | Submit) -> None:
        started = time.perf_counter()
        try:
            for _ in range(STALE_RETRIES):
                if await self._apply(frame):
                    metrics.ACK_SECONDS.observe(time.perf_counter() - started)
                    return
                await self._reload()
        except StoreError:
            # no ack: the widget keeps the frame and resends it after reconnecting
            log.warning("store_unavailable session=%s", self.view.id if self.view else "-")
            self.send(protocol.error_frame("unavailable", "could not save; retrying", frame.id))
            self.close(CloseCode.SERVICE_RESTART)

    async def _reload(self) -> None:
        assert self.view is not None
        record = await self.rt.store.load_session(self.view.id, self.view.seq)
        if record is not None:
            self.view = SessionView.of(record, self.view.site)

    def _decide(
        self, frame: VisitorMessage | FieldAnswer | Submit
    ) -> tuple[flow.Outcome, dict[str, Any] | None]:
        view = self.view
        assert view is not None
        if view.status is SessionStatus.COMPLETED:
            return flow.Outcome(), None  # the store answers dup or closed
        if isinstance(frame, Submit):
            return flow.on_submit(view.site, view.fields), None
        if isinstance(frame, VisitorMessage):
            return flow.on_message(view.site, view.fields, frame.text), _visitor_entry(frame, "")
        outcome = flow.on_field(view.site, view.fields, frame.name, frame.value)
        return outcome, _visitor_entry(frame, outcome.updates[frame.name])

    async def _apply(self, frame: VisitorMessage | FieldAnswer | Submit) -> bool:
        """One attempt; False when the view was stale and must be reloaded."""
        view = self.view
        assert view is not None
        try:
            outcome, entry = self._decide(frame)
        except FieldInvalid as exc:
            step = flow.next_step(view.site, view.fields)
            again = f" {step.ask}" if step and isinstance(frame, FieldAnswer) else ""
            self.send(protocol.error_frame("invalid_field", f"{exc}.{again}", frame.id))
            return True
        bots = [{"from": "bot", **reply} for reply in outcome.replies]
        result = await self.rt.store.visitor_event(
            view.id,
            frame.id,
            view.seq,
            entry,
            bots,
            outcome.updates,
            outcome.step,
            outcome.completes,
        )
        if result.kind == "stale":
            return False
        if result.kind == "dup":
            self.send(protocol.ack_frame(frame.id, result.seq))
        elif result.kind in ("closed", "gone"):
            view.status = SessionStatus.COMPLETED
            self.send(
                protocol.error_frame("session_closed", "This conversation is closed", frame.id)
            )
        elif result.kind == "limited":
            self._rate_limited(frame.id)
        elif result.kind == "full":
            too_long = "This conversation is too long; please call us instead"
            self.send(protocol.error_frame("rate_limited", too_long, frame.id))
            self.close(CloseCode.TOO_MANY)
        else:
            self._accepted(frame, result, bots, outcome)
        return True

    def _accepted(
        self,
        frame: VisitorMessage | FieldAnswer | Submit,
        result: VisitorResult,
        bots: list[dict[str, Any]],
        outcome: flow.Outcome,
    ) -> None:
        view = self.view
        assert view is not None
        ack_seq, first_bot_seq, now_ms = result.seq, result.first_bot_seq, result.now_ms
        recovered = result.recovered
        view.fields.update(outcome.updates)
        view.seq = first_bot_seq + len(bots) - 1 if bots else ack_seq
        view.status = SessionStatus.COMPLETED if outcome.completes else SessionStatus.OPEN
        self.quiet_since = time.monotonic()
        self.send(protocol.ack_frame(frame.id, ack_seq))
        for offset, bot in enumerate(bots):
            self.send(protocol.message_frame({**bot, "seq": first_bot_seq + offset, "ts": now_ms}))
        if recovered:
            metrics.SESSIONS.labels("recovered").inc()
        if outcome.completes:
            metrics.SESSIONS.labels("completed").inc()
            self.send(protocol.lead_frame(SessionStatus.COMPLETED.value, view.id))
            self.rt.delivery_wakeup.set()
            log.info("lead_completed session=%s site=%s", view.id, view.site.id)
            self._reap_when_idle()

    def notify_abandoned(self) -> None:
        """Called from the notification listener: the sweeper flagged our session."""
        if self.view is not None and self.view.status is SessionStatus.OPEN:
            self.view.status = SessionStatus.ABANDONED
            self.send(protocol.lead_frame(SessionStatus.ABANDONED.value, self.view.id))
            self._kick()
            self.quiet_since = time.monotonic()
            self._reap_when_idle()

    def _reap_when_idle(self) -> None:
        """Close the socket of a finished session once it has been quiet for the site's
        idle timeout (since the visitor's last event, or since it was abandoned): an
        open tab that only pings holds no slot for ever (the widget connects again
        when the visitor writes)."""
        view = self.view
        if view is None or view.status is SessionStatus.OPEN or self.state is ConnState.CLOSING:
            return
        left = self.quiet_since + view.site.idle_timeout - time.monotonic()
        if left > 0:
            if self.reaper is not None:
                self.reaper.cancel()
            self.reaper = asyncio.get_running_loop().call_later(left, self._reap_when_idle)
            return
        self.close(CloseCode.IDLE)
        self._kick()


class WidgetSocket:
    """The ``/ws`` endpoint as a plain ASGI app (``app.ChatleadApp`` calls it before
    starlette's middleware), so frames skip starlette's wrappers (see
    :class:`Connection`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        runtime: Runtime = ws.app.state.runtime
        origin = ws.headers.get("origin")
        hinted = runtime.sites.get(ws.query_params.get("site", ""))
        allowed = (
            runtime.origin_allowed(hinted, origin, ws)
            if hinted
            else runtime.origin_allowed_anywhere(origin, ws)
        )
        if not allowed:
            # closing before accept() answers the handshake with HTTP 403
            await ws.close(int(CloseCode.POLICY_VIOLATION))
            return
        ip = ws.client.host if ws.client else "-"
        slots = runtime.slots
        socket_id = slots.new_id()
        ip_slot = keys.ip_slots(client_network(ip))
        try:
            admitted = await slots.acquire(ip_slot, socket_id, runtime.settings.max_conn_per_ip)
        except StoreError:
            log.warning("store_unavailable_at_connect")
            await _refuse(ws, "unavailable", "try again shortly", CloseCode.SERVICE_RESTART)
            return
        if not admitted:
            busy = "Too many open chats from your network"
            await _refuse(ws, "rate_limited", busy, CloseCode.TOO_MANY)
            return
        metrics.CONNECTIONS.inc()
        try:
            await ws.accept()
            # Its own task: each wake-up of a coroutine resumes every frame of the
            # await chain above it (uvicorn's protocol, its proxy-headers middleware,
            # the app, this handshake). Cancelling this coroutine cancels the task.
            await asyncio.create_task(Connection(ws, runtime, socket_id, receive, send).run())
        finally:
            metrics.CONNECTIONS.dec()
            slots.release(ip_slot, socket_id)


async def _refuse(ws: WebSocket, code: str, message: str, close: CloseCode) -> None:
    """Open the socket only to say why it is closed (a 403 would hide the reason)."""
    with contextlib.suppress(Exception):
        await ws.accept()
        await ws.send_text(protocol.error_frame(code, message))
        await ws.close(int(close))
