"""The lead as a CRM record reads it: captured fields and the transcript as text.

Both CRM formats (``copper``, ``pulse``) and the ``template`` format read an
ExternalLead through these pure functions, so a field is found the same way
everywhere:

* :func:`lead_field` looks a field up by its canonical name (``name``, ``email``,
  ``phone``, ``company``, ``message``) and accepts the aliases Stentor's own lead
  helpers accept (``phone_number``/``phonenumber``, ``first_name`` + ``last_name``),
  whatever their case or separators (``phoneNumber``, ``First-Name``).
* :func:`readable_transcript` renders the conversation as plain lines a sales
  person can read in a CRM note, capped at :data:`TRANSCRIPT_LIMIT` characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import phonenumbers

__all__ = [
    "BOT_ID",
    "TRANSCRIPT_LIMIT",
    "TRUNCATED_MARKER",
    "e164",
    "lead_field",
    "lead_fields",
    "name_parts",
    "RESUME_LABEL",
    "readable_transcript",
    "transcript_lines",
]

BOT_ID = "bot"
"""``from.id`` of the bot's transcript entries (seeds/README.md)."""
TRANSCRIPT_LIMIT = 10_000
"""Longest readable transcript put into a CRM record, in characters."""
TRUNCATED_MARKER = "[transcript truncated]"

# Canonical name -> the spellings accepted for it, compared after _squash().
_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "fullname"),
    "email": ("email", "emailaddress"),
    "phone": ("phone", "phonenumber"),
    "company": ("company", "companyname"),
    "message": ("message",),
    "first_name": ("firstname",),
    "last_name": ("lastname",),
}
_NOT_KEY = re.compile(r"[^a-z0-9]")


def _squash(name: str) -> str:
    """``Phone_Number``, ``phone-number``, ``phoneNumber`` -> ``phonenumber``."""
    return _NOT_KEY.sub("", name.lower())


def lead_fields(lead: Mapping[str, Any]) -> dict[str, str]:
    """The lead's captured fields as ``{name: value}``; a later entry wins, blanks are dropped."""
    found: dict[str, str] = {}
    for item in lead.get("fields") or ():
        if not isinstance(item, Mapping):
            continue
        name, value = item.get("name"), item.get("value")
        if isinstance(name, str) and isinstance(value, str) and value.strip():
            found[name] = value.strip()
    return found


def lead_field(lead: Mapping[str, Any], name: str) -> str | None:
    """The value of canonical field ``name`` (or one of its aliases), or ``None``.

    ``name`` falls back to ``first_name`` + ``last_name`` when the lead has no
    full name. The ExternalLead's top-level ``company`` is the *site's* company
    (from config), never the visitor's, so it is not consulted here.
    """
    wanted = _ALIASES.get(name, (_squash(name),))
    value: str | None = None
    for field_name, field_value in lead_fields(lead).items():
        if _squash(field_name) in wanted:
            value = field_value
    if value is None and name == "name":
        parts = [lead_field(lead, "first_name"), lead_field(lead, "last_name")]
        value = " ".join(part for part in parts if part) or None
    return value


def name_parts(lead: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """First and last name: from ``first_name``/``last_name`` if given, else split ``name``.

    The first word of a full name is the first name, the rest the last name, so
    ``"Mary Ann Smith"`` gives ``("Mary", "Ann Smith")`` and ``"Cher"`` gives
    ``("Cher", None)``.
    """
    first, last = lead_field(lead, "first_name"), lead_field(lead, "last_name")
    if first or last:
        return first, last
    full = lead_field(lead, "name")
    if not full:
        return None, None
    head, _, rest = " ".join(full.split()).partition(" ")
    return head, rest or None


def e164(value: str, region: str = "US") -> str:
    """``value`` in E.164 when it parses as a possible number, else as given (stripped).

    The flow already stores phone fields in E.164; this catches alias fields a
    site's flow collected as free text.
    """
    value = value.strip()
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return value
    if not phonenumbers.is_possible_number(number):
        return value
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _when(created: Any) -> str:
    if not isinstance(created, str):
        return "????-??-?? ??:?? UTC"
    try:
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return created
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _speaker(entry: Mapping[str, Any], user_id: Any) -> str:
    """``Bot``, ``Visitor`` (the lead's user, or no sender), or the sender's own id."""
    sender = entry.get("from")
    sender_id = sender.get("id") if isinstance(sender, Mapping) else None
    if sender_id == BOT_ID:
        return "Bot"
    if sender_id is None or sender_id == user_id:
        return "Visitor"
    name = sender.get("name") if isinstance(sender, Mapping) else None
    return str(name or sender_id)  # an agent (CONTRACT §10)


def transcript_lines(lead: Mapping[str, Any]) -> list[str]:
    """One line per message, ``2026-11-23 14:05 UTC  Visitor: text``.

    A message's own line breaks become indented continuation lines so every
    new line of the result still starts with a timestamp or spaces.
    """
    lines = []
    user_id = lead.get("userId")
    for entry in lead.get("transcript") or ():
        if not isinstance(entry, Mapping):
            continue
        text = str(entry.get("message") or "").strip()
        text = "\n    ".join(part.rstrip() for part in text.splitlines())
        lines.append(f"{_when(entry.get('createdTime'))}  {_speaker(entry, user_id)}: {text}")
    return lines


RESUME_LABEL = "Resume the chat"
"""What precedes an abandoned lead's resume link at the end of a CRM note (§11)."""


def readable_transcript(
    lead: Mapping[str, Any], limit: int = TRANSCRIPT_LIMIT, resume_url: str | None = None
) -> str:
    """The transcript as plain text, at most ``limit`` characters.

    When it does not fit, whole lines are kept from the start (the answers the
    flow asked for come first) and the text ends with :data:`TRUNCATED_MARKER`
    on its own line. A ``resume_url`` (an abandoned lead's, CONTRACT §11) ends the
    text, after a blank line, and is never cut: the transcript makes room for it.
    """
    if resume_url:
        tail = f"{RESUME_LABEL}: {resume_url}"
        if len(tail) <= limit:
            text = _fitted(lead, max(0, limit - len(tail) - 2))
            return f"{text}\n\n{tail}" if text else tail
    return _fitted(lead, limit)


def _fitted(lead: Mapping[str, Any], limit: int) -> str:
    text = "\n".join(transcript_lines(lead))
    if len(text) <= limit:
        return text
    room = max(0, limit - len(TRUNCATED_MARKER) - 1)
    head = text[:room]
    cut = head.rfind("\n")
    if cut > 0:
        head = head[:cut]
    return f"{head}\n{TRUNCATED_MARKER}" if head else TRUNCATED_MARKER[:limit]
