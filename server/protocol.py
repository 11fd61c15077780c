"""The widget wire protocol (docs/PROTOCOL.md), with no I/O.

Client text frames are parsed into small frozen dataclasses; anything else raises
:class:`~server.errors.FrameError` (wire code ``bad_frame``, the socket stays
open). Server frames are built by the ``*_frame`` functions as JSON text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any, ClassVar

import orjson

from .attribution import parse_attribution, parse_trigger
from .errors import FrameError
from .identity import Identity, parse_identity
from .texts import language

__all__ = [
    "ClientFrame",
    "CloseCode",
    "ConsentGiven",
    "ErrorCode",
    "FieldAnswer",
    "Hello",
    "Page",
    "Ping",
    "Submit",
    "VisitorMessage",
    "ack_frame",
    "agent_frame",
    "error_frame",
    "frame_object",
    "iso_ms",
    "lead_frame",
    "message_frame",
    "parse_client_frame",
    "pong_frame",
    "typing_frame",
    "welcome_frame",
]

MAX_ID = 64
MAX_TEXT = 4000
MAX_VALUE = 1000
MAX_URL = 2000
MAX_SHORT = 200
MAX_RESUME = 512  # what the widget takes from the fragment
HELLO_TIMEOUT = 10.0


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame (docs/PROTOCOL.md, Errors and closes)."""

    BAD_FRAME = "bad_frame"
    INVALID_FIELD = "invalid_field"
    SESSION_CLOSED = "session_closed"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_SITE = "unknown_site"
    BAD_RESUME = "bad_resume"
    UNAVAILABLE = "unavailable"
    CONSENT_REQUIRED = "consent_required"


class CloseCode(IntEnum):
    """WebSocket close codes chatlead uses (RFC 6455 §7.4 plus private 4xxx)."""

    IDLE = 1000  # a finished session's visitor was idle: connect again on demand
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    NO_HELLO = 4400
    UNKNOWN_SITE = 4404
    TOO_MANY = 4429


@dataclass(frozen=True)
class Page:
    url: str | None = None
    title: str | None = None
    referrer: str | None = None


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    site: str
    session_id: str | None = None
    resume_token: str | None = None
    last_seq: int = 0
    user_id: str | None = None
    page: Page = Page()
    source: str | None = None
    attribution: tuple[tuple[str, str], ...] = ()
    trigger: str | None = None
    resume: str | None = None
    """A resume link's token (``#chatlead-resume=``, CONTRACT §11)."""
    hp: str | None = None
    lang: str | None = None
    """The widget's language (one of :data:`chatlead.texts.LANGUAGES`), else None."""
    identity: Identity | None = None
    """The page's signed-in user, as the tag names it (``data-user-id``/``-hash``, §13)."""
    """What the widget's hidden honeypot input holds (§12: filled means a bot)."""


@dataclass(frozen=True)
class VisitorMessage:
    TYPE: ClassVar[str] = "message"
    id: str
    text: str


@dataclass(frozen=True)
class FieldAnswer:
    TYPE: ClassVar[str] = "field"
    id: str
    name: str
    value: str


@dataclass(frozen=True)
class Submit:
    TYPE: ClassVar[str] = "submit"
    id: str


@dataclass(frozen=True)
class ConsentGiven:
    """``consent``: the visitor agreed to the site's notice ``version`` (§12)."""

    TYPE: ClassVar[str] = "consent"
    id: str
    version: str
    marketing: bool = False


@dataclass(frozen=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    pass


ClientFrame = Hello | VisitorMessage | FieldAnswer | Submit | ConsentGiven | Ping


def _string(
    obj: dict[str, Any], key: str, limit: int, *, required: bool = True, frame_id: str | None = None
) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise FrameError(f"missing field '{key}'", frame_id)
        return None
    if not isinstance(value, str):
        raise FrameError(f"field '{key}' must be a string", frame_id)
    if len(value) > limit:
        raise FrameError(f"field '{key}' is longer than {limit} characters", frame_id)
    return value


def _frame_id(obj: dict[str, Any]) -> str:
    frame_id = _string(obj, "id", MAX_ID)
    assert frame_id is not None
    if not frame_id:
        raise FrameError("field 'id' must not be empty")
    return frame_id


def _page(raw: Any) -> Page:
    if raw is None:
        return Page()
    if not isinstance(raw, dict):
        raise FrameError("field 'page' must be an object")
    return Page(
        url=_string(raw, "url", MAX_URL, required=False),
        title=_string(raw, "title", MAX_SHORT, required=False),
        referrer=_string(raw, "referrer", MAX_URL, required=False),
    )


def _hello(obj: dict[str, Any]) -> Hello:
    site = _string(obj, "site", 64)
    assert site is not None
    last_seq = obj.get("last_seq", 0)
    if last_seq is None:
        last_seq = 0
    if not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0:
        raise FrameError("field 'last_seq' must be a non-negative integer")
    return Hello(
        site=site,
        session_id=_string(obj, "session_id", MAX_ID, required=False),
        resume_token=_string(obj, "resume_token", 128, required=False),
        last_seq=last_seq,
        user_id=_string(obj, "user_id", MAX_ID, required=False),
        page=_page(obj.get("page")),
        source=_string(obj, "source", 32, required=False),
        # lenient (§13): unknown keys and malformed values are dropped, not refused
        attribution=parse_attribution(obj.get("attribution")),
        trigger=parse_trigger(obj.get("trigger")),
        resume=_string(obj, "resume", MAX_RESUME, required=False),
        hp=_honeypot(obj.get("hp")),
        identity=parse_identity(obj.get("identity")),
        lang=language(obj.get("lang")),
    )


def _honeypot(value: Any) -> str | None:
    """Lenient: whatever a bot put there counts as filled, never as a frame error."""
    if value is None or value == "":
        return None
    return value[:MAX_SHORT] if isinstance(value, str) else "filled"


def _message(obj: dict[str, Any]) -> VisitorMessage:
    frame_id = _frame_id(obj)
    text = _string(obj, "text", MAX_TEXT, frame_id=frame_id)
    assert text is not None
    if not text.strip():
        raise FrameError("field 'text' must not be blank", frame_id)
    return VisitorMessage(id=frame_id, text=text)


def _field(obj: dict[str, Any]) -> FieldAnswer:
    frame_id = _frame_id(obj)
    name = _string(obj, "name", 40, frame_id=frame_id)
    value = _string(obj, "value", MAX_VALUE, frame_id=frame_id)
    assert name is not None and value is not None
    return FieldAnswer(id=frame_id, name=name, value=value)


def _submit(obj: dict[str, Any]) -> Submit:
    return Submit(id=_frame_id(obj))


def _consent(obj: dict[str, Any]) -> ConsentGiven:
    frame_id = _frame_id(obj)
    version = _string(obj, "version", 64, frame_id=frame_id)
    assert version is not None
    marketing = obj.get("marketing", False)
    if not isinstance(marketing, bool):
        raise FrameError("field 'marketing' must be true or false", frame_id)
    return ConsentGiven(id=frame_id, version=version, marketing=marketing)


def _ping(obj: dict[str, Any]) -> Ping:
    return Ping()


_PARSERS: dict[str, Callable[[dict[str, Any]], ClientFrame]] = {
    "hello": _hello,
    "message": _message,
    "field": _field,
    "submit": _submit,
    "consent": _consent,
    "ping": _ping,
}
CLIENT_FRAME_TYPES = tuple(_PARSERS)
"""The ``type`` of every client frame, as on the wire (and in metrics labels)."""


def frame_object(text: str) -> dict[str, Any]:
    """A text frame's JSON object (widget or agent socket).

    Raises:
        FrameError: not JSON, or not an object.
    """
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FrameError("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError("frame must be a JSON object")
    return obj


def parse_client_frame(text: str) -> ClientFrame:
    """Parse one client text frame.

    Raises:
        FrameError: not JSON, not an object, unknown ``type``, or a missing,
            mistyped or oversized field. ``frame_id`` is set when the frame's
            ``id`` could be read, so the error can name it.
    """
    obj = frame_object(text)
    kind = obj.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raw_id = obj.get("id")
        raise FrameError(
            f"unknown frame type {kind!r}" if kind is not None else "missing field 'type'",
            raw_id if isinstance(raw_id, str) and len(raw_id) <= MAX_ID else None,
        )
    return parser(obj)


# --- server frames ----------------------------------------------------------


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with millisecond precision, ``Z`` suffix."""
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _dump(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


def message_body(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored transcript entry as the ``message`` frame object."""
    sender = entry["from"]
    body: dict[str, Any] = {
        "type": "message",
        "seq": entry["seq"],
        "from": "agent" if isinstance(sender, dict) else sender,
        "text": entry["text"],
        "ts": iso_ms(entry["ts"]),
    }
    if isinstance(sender, dict):  # an agent's entry (§10): {"id": "agent:<id>", "name"}
        body["name"] = sender.get("name", "")
    if "prompt" in entry:
        body["prompt"] = entry["prompt"]
    return body


def message_frame(entry: dict[str, Any]) -> str:
    return _dump(message_body(entry))


def welcome_frame(
    *,
    session_id: str,
    resume_token: str,
    status: str,
    resumed: bool,
    seq: int,
    transcript: list[dict[str, Any]],
    fields: dict[str, str],
    prompt: dict[str, Any] | None,
    user_id: str,
    consent: dict[str, Any] | None = None,
) -> str:
    """``welcome``; ``user_id`` (beyond §3) lets the widget keep the visitor id, and
    ``consent`` is the notice to agree to first (§12)."""
    body: dict[str, Any] = {
        "type": "welcome",
        "session_id": session_id,
        "resume_token": resume_token,
        "user_id": user_id,
        "status": status,
        "resumed": resumed,
        "seq": seq,
        "transcript": [message_body(entry) for entry in transcript],
        "fields": [{"name": k, "value": v} for k, v in fields.items() if v],
    }
    if prompt is not None:
        body["prompt"] = prompt
    if consent is not None:
        body["consent"] = consent
    return _dump(body)


def ack_frame(frame_id: str, seq: int) -> str:
    return _dump({"type": "ack", "id": frame_id, "seq": seq})


def lead_frame(status: str, session_id: str) -> str:
    return _dump({"type": "lead", "status": status, "session_id": session_id})


def error_frame(
    code: ErrorCode,
    message: str,
    frame_id: str | None = None,
    prompt: dict[str, Any] | None = None,
) -> str:
    """``error``; ``prompt`` (a slot just booked by someone else, §12): ask again with it."""
    body: dict[str, Any] = {"type": "error", "code": code.value, "message": message}
    if frame_id is not None:
        body["id"] = frame_id
    if prompt is not None:
        body["prompt"] = prompt
    return _dump(body)


def pong_frame() -> str:
    return '{"type":"pong"}'


def agent_frame(status: str, name: str) -> str:
    """``agent``: an agent ``joined`` or ``left`` the visitor's chat (§10)."""
    return _dump({"type": "agent", "status": status, "name": name})


def typing_frame() -> str:
    return '{"type":"typing","from":"agent"}'
