"""What a widget connection decides (:mod:`server.conversation`), as values: its view of
the session, the replies it returns and the commands it gives the store (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import consent, flow
from .protocol import CloseCode
from .session import SessionRecord, SessionStatus
from .sites import Site

__all__ = ["NewSession", "Offers", "Reply", "SessionView", "VisitorCommand"]

Offers = list[dict[str, str]] | None
"""A slot step's free slots (``{label, value}``) for a prompt, or None (§12)."""


@dataclass(slots=True)
class SessionView:
    """What this connection knows of its session; the store stays the authority."""

    id: str
    site: Site
    seq: int
    status: SessionStatus
    fields: dict[str, str] = field(default_factory=dict)
    agent: str = ""
    """The agent holding the session (the bot is silent), or ``""`` (§10)."""
    agent_name: str = ""

    @classmethod
    def of(cls, record: SessionRecord, site: Site, agent: str) -> SessionView:
        """The view of ``record``, held by ``agent`` (``""``: by no one)."""
        name = record.agent_name if agent else ""
        return cls(record.id, site, record.seq, record.status, dict(record.fields), agent, name)

    def prompt(self, offers: Offers = None) -> dict[str, Any] | None:
        """The next question's prompt (``offers``: a slot step's free slots)."""
        if self.status is SessionStatus.COMPLETED or self.agent:
            return None  # done, or an agent holds it: free text to the agent
        step = flow.next_step(self.site, self.fields)
        if step is None:
            return None
        prompt = flow.prompt_of(step)
        if offers is not None:
            prompt["options"] = offers
        return prompt

    def consent(self) -> dict[str, Any] | None:
        """The welcome's ``consent`` notice while the session has not agreed (§12)."""
        if self.status is SessionStatus.COMPLETED:
            return None
        return consent.offer(self.site.consent, self.fields)


@dataclass(frozen=True, slots=True)
class Reply:
    """What to do next: send ``frames``, then close with ``close`` if set.

    ``retry``: the store found our view stale; reload the session and ask again.
    ``accepted``, ``completed``, ``recovered``: an event was stored, and what it did.
    """

    frames: tuple[str, ...] = ()
    close: CloseCode | None = None
    retry: bool = False
    accepted: bool = False
    completed: bool = False
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class VisitorCommand:
    """One visitor event for the store (``Store.visitor_event``), decided from the view."""

    client_id: str
    expected_seq: int
    visitor_entry: dict[str, Any] | None
    bots: list[dict[str, Any]]
    updates: dict[str, str]
    step: str
    completes: bool
    agent: str
    """Who the decision assumed holds the session (the store checks it)."""
    stamp: str = ""
    """A field the store sets to its time now (``consent_at``), or ``""``."""
    spam: str = ""
    """Why this event flags the session spam (:mod:`chatlead.spam`), or ``""``."""


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session to create (``Store.create_session``) and the welcome once it is."""

    session_id: str
    resume_token: str
    user_id: str
    meta: dict[str, str]
    entries: list[dict[str, Any]]
