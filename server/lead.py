"""Build a Stentor ``ExternalLead`` from a stored session (pure).

Shape: seed 000 (``stentor-models`` Crm.ts) in camelCase; transcript entries are
Stentor ``Message`` objects as described in ``seeds/README.md``. The lead can be
built at any moment of the conversation, not only at the end.
"""

from __future__ import annotations

from typing import Any

from .flow import asked_steps, job_type_of
from .protocol import iso_ms
from .session import PAGE_FIELDS, SessionRecord
from .sites import Site

__all__ = ["BOT_ID", "build_lead", "lead_fields", "transcript_message"]

BOT_ID = "bot"


def transcript_message(entry: dict[str, Any], user_id: str) -> dict[str, Any]:
    """One stored transcript entry as a Stentor ``Message``."""
    sender = entry["from"]
    from_bot = sender != "visitor"
    # an agent's entry names itself: {"id": "agent:<id>", "name"} (CONTRACT §10)
    speaker = sender if isinstance(sender, dict) else {"id": BOT_ID if sender == "bot" else sender}
    attributes: dict[str, Any] = {"seq": entry["seq"]}
    if "field" in entry:
        attributes["field"] = entry["field"]
    message: dict[str, Any] = {
        "createdTime": iso_ms(entry["ts"]),
        "from": speaker if from_bot else {"id": user_id},
        "to": [{"id": user_id if from_bot else BOT_ID}],
        "message": entry["text"],
        "attributes": attributes,
    }
    options = (entry.get("prompt") or {}).get("options")
    if options:
        titles = [o["label"] if isinstance(o, dict) else str(o) for o in options]
        message["response"] = {
            "displayText": entry["text"],
            "suggestions": [{"title": title} for title in titles],
        }
    return message


def lead_fields(record: SessionRecord, site: Site) -> list[dict[str, str]]:
    """Captured fields in flow order, then extras, then page data; skipped ones and the
    answers of steps a later change of mind made not apply left out."""
    order = [step.field for step in asked_steps(site, record.fields)]
    every_step = {step.field for step in site.flow}
    names = order + sorted(set(record.fields) - every_step)
    out = [{"name": n, "value": record.fields[n]} for n in names if record.fields.get(n)]
    out += [{"name": k, "value": record.page[k]} for k in PAGE_FIELDS if k in record.page]
    return out


def build_lead(
    record: SessionRecord, site: Site, *, abandoned: bool, suffix: str = ""
) -> dict[str, Any]:
    """The ExternalLead for ``record``; ``abandoned`` sets ``isAbandoned``; ``refId`` is
    the record id the destination with event id ``suffix`` gave it (CONTRACT §9)."""
    lead: dict[str, Any] = {
        "userId": record.user_id,
        "sessionId": record.id,
        "fields": lead_fields(record, site),
        "source": record.source or site.source,
        "transcript": [transcript_message(e, record.user_id) for e in record.transcript],
        "isAbandoned": abandoned,
    }
    optional = {
        "company": site.company,
        "refId": record.ref_ids.get(suffix),
        "jobTypeId": job_type_of(site, record.fields),
        "availabilityClassId": _availability_class(site),
        "placeId": site.place_id,
    }
    lead.update({k: v for k, v in optional.items() if v})
    return lead


def _availability_class(site: Site) -> str | None:
    """The availability block's class (§12: the slots it offers), else the site's."""
    own = site.availability.availability_class_id if site.availability else None
    return own or site.availability_class_id
