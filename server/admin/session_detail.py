"""One session as the admin sees it (pure): transcript, fields, lead and deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Annotated, Any, Literal

from pydantic import Field

from ..lead import build_lead
from ..session import SessionRecord, SessionStatus
from ..sites import Site
from .deliveries import DeliveryItem
from .params import iso_ms

__all__ = [
    "EarlierSession",
    "SessionDetail",
    "TranscriptEntry",
    "earlier_sessions",
    "session_detail",
]


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    seq: int
    sender: Annotated[str, Field(alias="from")]
    text: str
    ts: str
    field: str | None
    name: str | None = None
    """An agent's name (``from`` is ``agent``: CONTRACT §10)."""


@dataclass(frozen=True, slots=True)
class EarlierSession:
    """Another chat of the same identified user."""

    id: str
    status: str
    created_at: str


def earlier_sessions(rows: list[tuple[str, str, int]]) -> list[EarlierSession]:
    """The user's other chats, from :meth:`Store.user_sessions` rows."""
    return [EarlierSession(sid, status, iso_ms(ms)) for sid, status, ms in rows]


@dataclass(frozen=True, slots=True)
class SessionDetail:
    """A session with its transcript, captured fields, lead and delivery events."""

    id: str
    site: str
    status: Literal["open", "completed", "abandoned"]
    created_at: str
    last_activity_at: str
    abandoned_at: str | None
    completed_at: str | None
    step: str
    recovered: bool
    user_id: str
    page: dict[str, str]
    fields: dict[str, str]
    transcript: list[TranscriptEntry]
    lead: dict[str, Any] | None
    deliveries: list[DeliveryItem]
    resume_url: str | None = None
    """The visitor's resume link (§11) while the session is unfinished and it lives."""
    spam: str | None = None
    """Why it is flagged spam and kept from the destinations (§12), until released."""
    identified: bool = False
    """``user_id`` is the site's signed-in user (§13); ``earlier`` lists their chats."""
    earlier: list[EarlierSession] = dataclass_field(default_factory=list)


def _entry(raw: dict[str, Any]) -> TranscriptEntry:
    sender = raw.get("from", "")
    agent = sender if isinstance(sender, dict) else None
    return TranscriptEntry(
        seq=int(raw.get("seq", 0)),
        sender="agent" if agent is not None else str(sender),
        text=str(raw.get("text", "")),
        ts=iso_ms(int(raw.get("ts", 0))),
        field=str(raw["field"]) if raw.get("field") else None,
        name=str(agent.get("name", "")) if agent is not None else None,
    )


def session_detail(
    record: SessionRecord,
    site: Site | None,
    deliveries: list[DeliveryItem],
    resume_url: str | None = None,
    earlier: list[EarlierSession] | None = None,
) -> SessionDetail:
    """The ``/api/sessions/{id}`` view; ``lead`` is null when the site is gone."""
    abandoned = record.status is SessionStatus.ABANDONED
    return SessionDetail(
        id=record.id,
        site=record.site,
        status=record.status.value,
        created_at=iso_ms(record.created_ms),
        last_activity_at=iso_ms(record.active_ms),
        abandoned_at=iso_ms(record.abandoned_ms) if record.abandoned_ms else None,
        completed_at=iso_ms(record.completed_ms) if record.completed_ms else None,
        step=record.step,
        recovered=record.recovered,
        user_id=record.user_id,
        page=dict(record.page),
        fields={k: v for k, v in record.fields.items() if v},
        transcript=[_entry(e) for e in record.transcript],
        lead=build_lead(record, site, abandoned=abandoned) if site else None,
        deliveries=deliveries,
        resume_url=resume_url,
        spam=record.spam,
        identified=record.identified,
        earlier=earlier or [],
    )
