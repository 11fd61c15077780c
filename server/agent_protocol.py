"""The agent socket's wire protocol (CONTRACT §10), with no I/O.

Agent frames are parsed into small frozen dataclasses (anything else raises
:class:`~server.errors.FrameError`, answered ``bad_frame``); server frames are built
by the ``*_frame`` functions as JSON text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from .errors import FrameError
from .lead import lead_fields
from .protocol import MAX_ID, MAX_TEXT, frame_object, iso_ms
from .session import PAGE_FIELDS, SessionRecord
from .sites import Site

__all__ = [
    "MAX_AGENT_FRAME",
    "AgentError",
    "AgentFrame",
    "Join",
    "Leave",
    "Say",
    "Typing",
    "Watch",
    "agent_error_frame",
    "hello_frame",
    "parse_agent_frame",
    "session_frame",
    "history_frame",
    "transcript_frame",
]

MAX_AGENT_FRAME = 16 * 1024
"""Bytes of one agent frame; a longer one closes the socket with 1009."""
SESSION_ID = re.compile(r"^[0-9a-f]{24}$")
_NOT_FOR_AGENTS = frozenset(PAGE_FIELDS) - {"page_url", "referrer"}
"""Lead fields a console does not list (ad parameters, first touch): the page and
where the visitor came from are enough to answer."""


class AgentError(StrEnum):
    """The ``code`` of an ``error`` frame to an agent."""

    NOT_JOINED = "not_joined"
    TAKEN = "taken"
    SESSION_CLOSED = "session_closed"
    FORBIDDEN = "forbidden"
    BAD_FRAME = "bad_frame"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Watch:
    sites: tuple[str, ...] | None = None
    """The sites to watch; None: every site the agent may see."""


@dataclass(frozen=True)
class Join:
    session_id: str
    last_seq: int | None = None


@dataclass(frozen=True)
class Leave:
    session_id: str


@dataclass(frozen=True)
class Say:
    """``message``: an agent's text for a session it holds."""

    id: str
    session_id: str
    text: str


@dataclass(frozen=True)
class Typing:
    session_id: str


AgentFrame = Watch | Join | Leave | Say | Typing


def _session_id(obj: dict[str, Any]) -> str:
    value = obj.get("session_id")
    if not isinstance(value, str) or not SESSION_ID.match(value):
        raise FrameError("field 'session_id' must be a session id")
    return value


def _watch(obj: dict[str, Any]) -> Watch:
    sites = obj.get("sites")
    if sites is None:
        return Watch()
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise FrameError("field 'sites' must be a list of site ids")
    return Watch(tuple(sites))


def _join(obj: dict[str, Any]) -> Join:
    last_seq = obj.get("last_seq")
    if last_seq is not None and (
        not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0
    ):
        raise FrameError("field 'last_seq' must be a non-negative integer")
    return Join(_session_id(obj), last_seq)


def _say(obj: dict[str, Any]) -> Say:
    frame_id = obj.get("id")
    if not isinstance(frame_id, str) or not 0 < len(frame_id) <= MAX_ID:
        raise FrameError(f"field 'id' must be a string of 1 to {MAX_ID} characters")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise FrameError("field 'text' must be a non-blank string", frame_id)
    if len(text) > MAX_TEXT:
        raise FrameError(f"field 'text' is longer than {MAX_TEXT} characters", frame_id)
    return Say(frame_id, _session_id(obj), text)


_PARSERS: dict[str, Callable[[dict[str, Any]], AgentFrame]] = {
    "watch": _watch,
    "join": _join,
    "leave": lambda obj: Leave(_session_id(obj)),
    "message": _say,
    "typing": lambda obj: Typing(_session_id(obj)),
}


def parse_agent_frame(text: str) -> AgentFrame:
    """Parse one agent text frame.

    Raises:
        FrameError: not JSON, not an object, an unknown ``type`` or a bad field.
    """
    obj = frame_object(text)
    kind = obj.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise FrameError(f"unknown frame type {kind!r}")
    return parser(obj)


def _dump(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


def _speaker(entry: dict[str, Any]) -> tuple[str, dict[str, str] | None]:
    sender = entry["from"]
    if isinstance(sender, dict):
        agent_id = str(sender.get("id", "")).removeprefix("agent:")
        return "agent", {"id": agent_id, "name": str(sender.get("name", ""))}
    return str(sender), None


def transcript_frame(session_id: str, entry: dict[str, Any]) -> str:
    """A transcript entry as a ``message`` frame to an agent."""
    sender, agent = _speaker(entry)
    body: dict[str, Any] = {
        "type": "message",
        "session_id": session_id,
        "seq": entry["seq"],
        "from": sender,
        "text": entry["text"],
        "ts": iso_ms(entry["ts"]),
    }
    if agent is not None:
        body["agent"] = agent
    return _dump(body)


def session_frame(record: SessionRecord, site: Site, now_ms: int) -> str:
    """A ``session`` frame: the session as the console lists it.

    ``record.transcript`` holds at least the last entry (the last message); the
    holder is decided at ``now_ms`` as the scripts do.
    """
    body: dict[str, Any] = {
        "type": "session",
        "session_id": record.id,
        "site": record.site,
        "status": record.status.value,
        "step": record.step,
        "fields": [f for f in lead_fields(record, site) if f["name"] not in _NOT_FOR_AGENTS],
        "last_activity_at": iso_ms(record.active_ms),
    }
    if record.transcript:
        last = record.transcript[-1]
        sender, _ = _speaker(last)
        body["last_message"] = {"from": sender, "text": last["text"], "ts": iso_ms(last["ts"])}
    holder = record.holder(now_ms)
    if holder:
        body["agent"] = {"id": holder, "name": record.agent_name}
    elif record.wait_from_ms is not None and record.status.value == "open":
        body["waiting_since"] = iso_ms(record.wait_from_ms)
    return _dump(body)


def history_frame(session_id: str, user_id: str, rows: list[tuple[str, str, int]]) -> str:
    """A ``history`` frame after a join: the signed-in visitor's other chats (§13)."""
    earlier = [
        {"session_id": sid, "status": status, "created_at": iso_ms(ms)} for sid, status, ms in rows
    ]
    return _dump(
        {"type": "history", "session_id": session_id, "user_id": user_id, "sessions": earlier}
    )


def hello_frame(agent_id: str, name: str) -> str:
    """The first frame on an agent socket: who it is signed in as (beyond §10)."""
    return _dump({"type": "hello", "agent": {"id": agent_id, "name": name}})


def agent_error_frame(code: AgentError, message: str, frame_id: str | None = None) -> str:
    body: dict[str, Any] = {"type": "error", "code": code.value, "message": message}
    if frame_id is not None:
        body["id"] = frame_id
    return _dump(body)
