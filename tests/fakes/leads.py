"""Leads and events as the delivery loop hands them to a format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chatlead import formats
from chatlead.formats import LeadEvent
from chatlead.sites import Site

__all__ = ["event_for", "lead", "message", "site_with"]

SESSION_ID = "3f9a1c2e7b6d4e0f9a8b"
USER_ID = "v_7d1e"


def message(seq: int, text: str, *, bot: bool = False, field: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"seq": seq}
    if field:
        attributes["field"] = field
    sender, receiver = ("bot", USER_ID) if bot else (USER_ID, "bot")
    return {
        "createdTime": f"2026-11-23T14:{seq:02d}:07.120Z",
        "from": {"id": sender},
        "to": [{"id": receiver}],
        "message": text,
        "attributes": attributes,
    }


def lead(
    fields: dict[str, str] | None = None,
    *,
    abandoned: bool = False,
    ref_id: str | None = None,
    session_id: str = SESSION_ID,
) -> dict[str, Any]:
    fields = {"name": "Ada Lovelace", "email": "ada@example.com"} if fields is None else fields
    transcript = [message(1, "What's your name?", bot=True)]
    for seq, (name, value) in enumerate(fields.items(), start=2):
        transcript.append(message(seq, value, field=name))
    out: dict[str, Any] = {
        "userId": USER_ID,
        "sessionId": session_id,
        "fields": [{"name": k, "value": v} for k, v in fields.items()],
        "source": "chat-widget",
        "company": "Acme Plumbing",
        "transcript": transcript,
        "isAbandoned": abandoned,
    }
    if ref_id is not None:
        out["refId"] = ref_id
    return out


def site_with(**destination: Any) -> Site:
    """A site with one destination made from ``destination``'s keys (as in TOML)."""
    destination.setdefault("allow_private", True)
    made = formats.destination(destination)
    return Site(id="acme", company="Acme Plumbing", destinations=(made,))


def event_for(site: Site, the_lead: dict[str, Any], event_id: str = "evt_1") -> LeadEvent:
    kind = "lead.abandoned" if the_lead.get("isAbandoned") else "lead.completed"
    return LeadEvent(
        id=event_id,
        type=kind,
        created_at=datetime(2026, 11, 23, 14, 5, tzinfo=UTC),
        site=site,
        lead=the_lead,
        destination=site.destinations[0],
    )
