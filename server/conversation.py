"""What one widget connection decides, with no I/O.

:class:`Conversation` is the connection's state machine, in the manner of a sans-I/O
protocol: :mod:`server.ws` feeds it what arrived (a parsed frame, what the store
answered, the time) and carries out what it returns — frames to send, a close code,
a command for the store. Nothing here awaits, reads a socket or Redis, or looks at
the wall clock (the clock is injected), so every rule of the protocol is tested in
milliseconds (``tests/test_conversation.py``).

The life of a connection::

    AWAITING_HELLO --hello--> READY --close--> CLOSING
           \\------------------close-------------/

Anything else raises :class:`IllegalTransition`: a caller's bug, never a client's.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from . import consent, flow, protocol, spam
from .decisions import NewSession, Offers, Reply, SessionView, VisitorCommand
from .errors import FieldInvalid, FrameError, StoreError
from .protocol import (
    ClientFrame,
    CloseCode,
    ConsentGiven,
    ErrorCode,
    FieldAnswer,
    Hello,
    Ping,
    Submit,
    VisitorMessage,
)
from .session import SessionRecord, SessionStatus, Verdict, page_meta, token_hash
from .sites import Site
from .units import TokenBucket

__all__ = [
    "STALE_RETRIES",
    "WIRE_CODES",
    "ConnState",
    "Conversation",
    "IllegalTransition",
    "NewSession",
    "Reply",
    "SessionView",
    "VisitorCommand",
    "VisitorFrame",
]

STALE_RETRIES = 8
"""Times a visitor event is tried again on a reloaded view before giving up (another
tab, or an agent writing fast, can make a view stale again while it is reloaded)."""

WIRE_CODES: dict[type[Exception], ErrorCode] = {
    FrameError: ErrorCode.BAD_FRAME,
    FieldInvalid: ErrorCode.INVALID_FIELD,
    StoreError: ErrorCode.UNAVAILABLE,
}
"""The ``error`` code a widget gets for each error chatlead raises while serving it."""

VisitorFrame = VisitorMessage | FieldAnswer | Submit | ConsentGiven


class IllegalTransition(RuntimeError):
    """The connection was asked to move between states it cannot."""


class ConnState(Enum):
    AWAITING_HELLO = "awaiting_hello"
    READY = "ready"
    CLOSING = "closing"


_NEXT: dict[ConnState, frozenset[ConnState]] = {
    ConnState.AWAITING_HELLO: frozenset({ConnState.READY, ConnState.CLOSING}),
    ConnState.READY: frozenset({ConnState.CLOSING}),
    ConnState.CLOSING: frozenset(),
}


def _error(code: ErrorCode, message: str, frame_id: str | None = None) -> str:
    return protocol.error_frame(code, message, frame_id)


def _frame_id(frame: ClientFrame | FrameError) -> str | None:
    if isinstance(frame, FrameError):
        return frame.frame_id
    return frame.id if isinstance(frame, VisitorFrame) else None


def _visitor_entry(frame: VisitorMessage | FieldAnswer, value: str) -> dict[str, Any]:
    if isinstance(frame, VisitorMessage):
        return {"from": "visitor", "text": frame.text}
    return {"from": "visitor", "text": value or "(skipped)", "field": frame.name}


class Conversation:
    """One connection's protocol state: hello, then visitor events, then the close."""

    __slots__ = (
        "bucket",
        "clock",
        "holder_now",
        "max_strikes",
        "quiet_since",
        "state",
        "strikes",
        "view",
    )

    def __init__(
        self, msg_rate: float, msg_burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.state = ConnState.AWAITING_HELLO
        self.bucket = TokenBucket(msg_rate, msg_burst, clock)
        self.max_strikes = msg_burst
        self.strikes = 0
        self.view: SessionView | None = None
        self.holder_now = ""  # who the store said holds the session, at a stale answer
        self.quiet_since = clock()  # the last visitor event, or the session's end

    # --- states ---------------------------------------------------------------

    def advance(self, to: ConnState) -> None:
        """Move to ``to``; closing an already closing connection changes nothing."""
        if to is self.state is ConnState.CLOSING:
            return
        if to not in _NEXT[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {to.value}")
        self.state = to

    def closing(self, reply: Reply) -> Reply:
        """``reply``, with the state moved to CLOSING when it closes."""
        if reply.close is not None:
            self.advance(ConnState.CLOSING)
        return reply

    # --- the first frame ------------------------------------------------------

    def first_frame(self, frame: ClientFrame | FrameError | None) -> Hello | Reply:
        """The hello, or why the socket closes (``None``: no frame within the time)."""
        if isinstance(frame, Hello):
            return frame
        frames: tuple[str, ...] = ()
        if isinstance(frame, FrameError):
            frames = (_error(ErrorCode.BAD_FRAME, str(frame)),)
        elif frame is not None:
            frames = (_error(ErrorCode.BAD_FRAME, "the first frame must be hello"),)
        return self.closing(Reply(frames, CloseCode.NO_HELLO))

    def unknown_site(self, site_id: str) -> Reply:
        return self.closing(
            Reply((_error(ErrorCode.UNKNOWN_SITE, f"no site {site_id!r}"),), CloseCode.UNKNOWN_SITE)
        )

    def refused(self, code: ErrorCode, message: str, close: CloseCode) -> Reply:
        """Turn the socket away with one error (a cap reached, Redis unavailable)."""
        return self.closing(Reply((_error(code, message),), close))

    @staticmethod
    def may_resume(record: SessionRecord | None, hello: Hello, site: Site) -> bool:
        """The hello's session and token match a session of this site (constant time)."""
        return (
            record is not None
            and hello.resume_token is not None
            and hmac.compare_digest(record.token_hash, token_hash(hello.resume_token))
            and record.site == site.id
        )

    def resumed(
        self, record: SessionRecord, site: Site, token: str, now_ms: int, offers: Offers = None
    ) -> Reply:
        """Ready on an existing session: the welcome with what the widget missed (and
        ``offers``, a slot step's free slots), and the agent who holds it (or, when one
        held it once, that it left)."""
        self.view = SessionView.of(record, site, record.holder(now_ms))
        self.advance(ConnState.READY)
        welcome = protocol.welcome_frame(
            session_id=record.id,
            resume_token=token,
            status=record.status.value,
            resumed=True,
            seq=record.seq,
            transcript=list(record.transcript),
            fields=record.fields,
            prompt=self.view.prompt(offers),
            user_id=record.user_id,
            consent=self.view.consent(),
        )
        if self.view.agent:
            return Reply((welcome, protocol.agent_frame("joined", self.view.agent_name)))
        if record.agent_name:  # an agent held it once: a widget that missed the leave
            return Reply((welcome, protocol.agent_frame("left", record.agent_name)))
        return Reply((welcome,))

    @staticmethod
    def new_session(
        site: Site, hello: Hello, session_id: str, resume_token: str, user_id: str
    ) -> NewSession:
        """What to store for a new session (the ids are the caller's random draws)."""
        first = flow.next_step(site, {})
        meta = {
            "site": site.id,
            "idle": str(int(site.idle_timeout * 1000)),
            "fwd": site.forward_abandoned.value,
            "tok": token_hash(resume_token),
            "uid": user_id,
            "step": first.field if first else flow.DONE,
            **({"source": hello.source} if hello.source else {}),
            **({"lang": hello.lang} if hello.lang else {}),
            **page_meta(hello.page.url, hello.page.referrer, hello.attribution, hello.trigger),
            **({"spam": spam.HONEYPOT} if spam.hello_reason(site.spam, hello.hp) else {}),
        }
        entries = [{"from": "bot", **reply} for reply in flow.opening(site, {})]
        return NewSession(session_id, resume_token, meta["uid"], meta, entries)

    def created(
        self, new: NewSession, site: Site, seq: int, now_ms: int, offers: Offers = None
    ) -> Reply:
        """Ready on the new session: the welcome with the opening messages."""
        entries = [
            {**entry, "seq": number, "ts": now_ms}
            for number, entry in enumerate(new.entries, start=1)
        ]
        self.view = SessionView(new.session_id, site, seq, SessionStatus.OPEN)
        self.advance(ConnState.READY)
        welcome = protocol.welcome_frame(
            session_id=new.session_id,
            resume_token=new.resume_token,
            status=SessionStatus.OPEN.value,
            resumed=False,
            seq=seq,
            transcript=entries,
            fields={},
            prompt=self.view.prompt(offers),
            user_id=new.user_id,
            consent=self.view.consent(),
        )
        return Reply((welcome,))

    # --- frames once ready ----------------------------------------------------

    def frame(self, frame: ClientFrame | FrameError) -> Reply | VisitorCommand:
        """A frame after the hello: an answer now, or a visitor event for the store."""
        # every frame counts against the bucket, pings and garbage included
        if not self.bucket.take():
            return self.rate_limited(_frame_id(frame))
        self.strikes = 0
        if isinstance(frame, FrameError):
            return Reply((_error(ErrorCode.BAD_FRAME, str(frame), frame.frame_id),))
        if isinstance(frame, Ping):
            return Reply((protocol.pong_frame(),))
        if isinstance(frame, Hello):
            return Reply((_error(ErrorCode.BAD_FRAME, "hello was already received"),))
        return self.decide(frame)

    def rate_limited(self, frame_id: str | None) -> Reply:
        """Refuse one frame (no ack: the widget resends it later); close a flood."""
        self.strikes += 1
        close = CloseCode.TOO_MANY if self.strikes > self.max_strikes else None
        return self.closing(Reply((_error(ErrorCode.RATE_LIMITED, "Slow down", frame_id),), close))

    def decide(self, frame: VisitorFrame) -> Reply | VisitorCommand:
        """The flow's answer to a visitor event, from our view of the session."""
        view = self.view
        if view is None:
            raise IllegalTransition("a visitor event before the session")
        entry: dict[str, Any] | None = None
        if isinstance(frame, ConsentGiven) or view.status is SessionStatus.COMPLETED:
            return self.agreed(frame)
        if consent.needs_consent(view.site.consent, view.fields):
            asked = "Please read and accept the notice above first"
            return Reply((_error(ErrorCode.CONSENT_REQUIRED, asked, frame.id),))
        try:
            if isinstance(frame, Submit):
                outcome = flow.on_submit(view.site, view.fields)
            elif isinstance(frame, VisitorMessage):
                outcome = flow.on_message(view.site, view.fields, frame.text)
                entry = _visitor_entry(frame, "")
            else:
                outcome = flow.on_field(view.site, view.fields, frame.name, frame.value)
                entry = _visitor_entry(frame, outcome.updates[frame.name])
        except FieldInvalid as exc:
            step = flow.next_step(view.site, view.fields)
            again = f" {step.ask}" if step and isinstance(frame, FieldAnswer) else ""
            return Reply((_error(WIRE_CODES[FieldInvalid], f"{exc}.{again}", frame.id),))
        # while an agent holds the session the bot asks nothing (a submit still ends it)
        silent = bool(view.agent) and not outcome.completes
        return VisitorCommand(
            frame.id,
            view.seq,
            entry,
            [] if silent else [{"from": "bot", **reply} for reply in outcome.replies],
            outcome.updates,
            outcome.step,
            outcome.completes,
            view.agent,
            spam=spam.answer_reason(view.site.spam, outcome.updates) or "",
        )

    def agreed(self, frame: VisitorFrame) -> Reply | VisitorCommand:
        """A ``consent`` frame, or any event on a completed session (the store answers
        it dup or closed): stored with no transcript entry and no bot reply."""
        view = self.view
        assert view is not None
        updates: dict[str, str] = {}
        stamp = ""
        if isinstance(frame, ConsentGiven) and view.status is not SessionStatus.COMPLETED:
            try:
                updates = consent.consent_updates(view.site.consent, frame.version, frame.marketing)
            except FieldInvalid as exc:
                return Reply((_error(WIRE_CODES[FieldInvalid], str(exc), frame.id),))
            stamp = consent.CONSENT_AT
        step = flow.next_step(view.site, view.fields)
        return VisitorCommand(
            frame.id,
            view.seq,
            None,
            [],
            updates,
            step.field if step else flow.DONE,
            False,
            view.agent,
            stamp,
        )

    def stored(
        self,
        command: VisitorCommand,
        verdict: Verdict,
        seq: int = 0,
        first_bot_seq: int = 0,
        now_ms: int = 0,
        recovered: bool = False,
        agent: str = "",
    ) -> Reply:
        """What the store answered for ``command``, turned into frames (``agent``: on
        a stale answer, who holds the session now)."""
        view = self.view
        assert view is not None
        frame_id = command.client_id
        if verdict is Verdict.OK:
            return self._accepted(command, seq, first_bot_seq, now_ms, recovered)
        if verdict is Verdict.STALE:
            self.holder_now = agent
            return Reply(retry=True)
        if verdict is Verdict.DUP:
            return Reply((protocol.ack_frame(frame_id, seq),))
        if verdict is Verdict.LIMITED:
            return self.rate_limited(frame_id)
        if verdict is Verdict.FULL:
            too_long = "This conversation is too long; please call us instead"
            frames = (_error(ErrorCode.RATE_LIMITED, too_long, frame_id),)
            return self.closing(Reply(frames, CloseCode.TOO_MANY))
        view.status = SessionStatus.COMPLETED  # closed or gone
        closed = _error(ErrorCode.SESSION_CLOSED, "This conversation is closed", frame_id)
        return Reply((closed,))

    def _accepted(
        self, command: VisitorCommand, seq: int, first_bot_seq: int, now_ms: int, recovered: bool
    ) -> Reply:
        view = self.view
        assert view is not None
        bots = command.bots
        view.fields.update(command.updates)
        view.seq = first_bot_seq + len(bots) - 1 if bots else seq
        view.status = SessionStatus.COMPLETED if command.completes else SessionStatus.OPEN
        self.quiet_since = self.clock()
        frames = [protocol.ack_frame(command.client_id, seq)]
        frames.extend(
            protocol.message_frame({**bot, "seq": first_bot_seq + offset, "ts": now_ms})
            for offset, bot in enumerate(bots)
        )
        if command.completes:
            frames.append(protocol.lead_frame(SessionStatus.COMPLETED.value, view.id))
        return Reply(tuple(frames), accepted=True, completed=command.completes, recovered=recovered)

    def reloaded(self, record: SessionRecord | None) -> Reply:
        """A fresh read of the session after a stale answer (None: it is gone); the
        holder is the one the store named."""
        return self.caught_up(record, self.holder_now)

    def caught_up(self, record: SessionRecord | None, agent: str) -> Reply:
        """The session read again after our view (someone else changed it: an agent,
        or the visitor in another tab): what the widget has not seen, as frames.

        ``record`` holds the transcript after our view's seq; ``agent`` holds it now.
        """
        view = self.view
        if record is None or view is None or record.seq < view.seq:
            return Reply()
        before, before_name = view.agent, view.agent_name
        self.view = SessionView.of(record, view.site, agent)
        unseen = [e for e in record.transcript if e["seq"] > view.seq and e["from"] != "visitor"]
        by_agent = [e for e in unseen if isinstance(e["from"], dict)]
        others = [e for e in unseen if not isinstance(e["from"], dict)]
        frames: list[str] = []
        if agent and agent != before:
            frames.append(protocol.agent_frame("joined", self.view.agent_name))
        frames.extend(protocol.message_frame(e) for e in by_agent)
        if before and agent != before:
            frames.append(protocol.agent_frame("left", before_name))
        frames.extend(protocol.message_frame(e) for e in others)
        if by_agent:
            self.quiet_since = self.clock()
        return Reply(tuple(frames))

    def agent_typing(self) -> Reply:
        """An agent is typing in this session (nothing when none holds it here)."""
        if self.view is None or not self.view.agent:
            return Reply()
        return Reply((protocol.typing_frame(),))

    def unavailable(self, frame_id: str | None) -> Reply:
        """Redis could not store the event: no ack (the widget resends after reconnecting)."""
        frames = (_error(WIRE_CODES[StoreError], "could not save; retrying", frame_id),)
        return self.closing(Reply(frames, CloseCode.SERVICE_RESTART))

    # --- the session ends -----------------------------------------------------

    def abandoned(self) -> Reply:
        """Another process's sweeper flagged the session (nothing if it is not open)."""
        view = self.view
        if view is None or view.status is not SessionStatus.OPEN:
            return Reply()
        view.status = SessionStatus.ABANDONED
        self.quiet_since = self.clock()
        return Reply((protocol.lead_frame(SessionStatus.ABANDONED.value, view.id),))

    def idle_for(self) -> float | None:
        """Seconds until a finished session's quiet socket is let go (<= 0: now);
        None while the session is open (or there is none, or it is closing)."""
        view = self.view
        if view is None or view.status is SessionStatus.OPEN or self.state is ConnState.CLOSING:
            return None
        return self.quiet_since + view.site.idle_timeout - self.clock()

    def let_go(self) -> Reply:
        """Close a finished session's quiet socket (the widget connects again on demand)."""
        return self.closing(Reply(close=CloseCode.IDLE))
