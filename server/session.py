"""A chat session as stored in Redis, and its lifecycle (docs/PROTOCOL.md, Rules).

``open`` -> ``completed`` (terminal) or ``open`` -> ``abandoned`` -> ``open``
again (flagged ``recovered``) on the next visitor event. The transitions are
carried out by the Lua scripts next to the store; this module names them and
parses what the store reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .attribution import ATTRIBUTION_KEYS, CLICK_IDS, UTM_KEYS

__all__ = [
    "HOLD_MS",
    "SessionRecord",
    "SessionStatus",
    "Verdict",
    "page_meta",
    "parse_session",
    "token_hash",
]


class SessionStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


class Verdict(StrEnum):
    """What the visitor script answered for one event (``visitor.lua``)."""

    OK = "ok"  # stored: ack it
    DUP = "dup"  # that frame id was stored before: ack it again
    STALE = "stale"  # our view is behind the store: reload and decide again
    CLOSED = "closed"  # the session is completed: read-only
    GONE = "gone"  # no such session (expired or erased)
    FULL = "full"  # the transcript reached its length cap
    LIMITED = "limited"  # the session's token bucket is empty


HOLD_MS = 30_000
"""How long an agent's hold outlives its socket (CONTRACT §10)."""
_UTM = UTM_KEYS
# Session hash fields copied into the lead as fields when present (§4, §13).
# ``recovered_by``: what brought an abandoned visitor back (§11: link, returned, ...).
# ``variant``: the experiment arm the visitor was given (§12).
PAGE_FIELDS = (
    "page_url",
    "referrer",
    *ATTRIBUTION_KEYS,
    "trigger",
    "recovered_by",
    "variant",
    "lang",
)


@dataclass(frozen=True)
class SessionRecord:
    id: str
    site: str
    status: SessionStatus
    seq: int
    created_ms: int
    active_ms: int
    step: str
    user_id: str
    recovered: bool = False
    ref_ids: dict[str, str] = field(default_factory=dict)
    """Each destination's CRM record id, by event id suffix (``""``: the webhook's)."""
    source: str | None = None
    abandoned_ms: int | None = None
    completed_ms: int | None = None
    page: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    transcript: tuple[dict[str, Any], ...] = ()
    token_hash: str = ""
    agent: str = ""
    """The agent that holds or last held the session (see :meth:`holder`), or ``""``."""
    agent_name: str = ""
    agent_seen_ms: int = 0
    wait_from_ms: int | None = None
    """When the visitor's first message no agent has answered was sent (§10)."""
    spam: str | None = None
    """Why the session is flagged spam (§12: kept from the destinations), or None."""
    identified: bool = False
    """``user_id`` is the site's own signed-in user, proven by its hash (§13)."""

    def holder(self, now_ms: int) -> str:
        """The agent holding the session at ``now_ms`` (its hold lapses :data:`HOLD_MS`
        after its socket last touched it), or ``""``; ``_prelude.lua`` decides alike."""
        return self.agent if self.agent and now_ms - self.agent_seen_ms < HOLD_MS else ""


def token_hash(token: str) -> str:
    """What the store keeps of a resume token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def parse_session(
    session_id: str,
    meta: dict[str, str],
    fields: dict[str, str],
    transcript: list[str],
) -> SessionRecord:
    """Build a record from the raw hashes and list the store read."""
    return SessionRecord(
        id=session_id,
        site=meta["site"],
        status=SessionStatus(meta["status"]),
        seq=int(meta.get("seq") or 0),
        created_ms=int(meta["created"]),
        active_ms=int(meta.get("active") or meta["created"]),
        step=meta.get("step", ""),
        user_id=meta.get("uid", ""),
        recovered=meta.get("recovered") == "1",
        ref_ids={k[6:]: v for k, v in meta.items() if k.startswith("ref_id") and v},
        source=meta.get("source") or None,
        abandoned_ms=_int(meta.get("abandoned_at")),
        completed_ms=_int(meta.get("completed_at")),
        page={k: meta[k] for k in PAGE_FIELDS if meta.get(k)},
        fields=dict(fields),
        transcript=tuple(json.loads(entry) for entry in transcript),
        token_hash=meta.get("tok", ""),
        agent=meta.get("agent", ""),
        agent_name=meta.get("agent_name", ""),
        agent_seen_ms=int(meta.get("agent_seen") or 0),
        wait_from_ms=_int(meta.get("wait_from")),
        spam=meta.get("spam") or None,
        identified=meta.get("identified") == "1",
    )


def page_meta(
    url: str | None,
    referrer: str | None,
    attribution: tuple[tuple[str, str], ...] = (),
    trigger: str | None = None,
) -> dict[str, str]:
    """``page_url``, ``referrer``, ad parameters of the page URL, when present; then what
    the widget kept from earlier pages (``attribution``) where the URL says nothing, and
    the ``trigger`` that opened the chat."""
    meta: dict[str, str] = {}
    if url:
        meta["page_url"] = url
        query = parse_qs(urlsplit(url).query)
        for key in (*_UTM, *CLICK_IDS):
            if query.get(key):
                meta[key] = query[key][0][:200]
    if referrer:
        meta["referrer"] = referrer
    for key, value in attribution:
        meta.setdefault(key, value)
    if trigger:
        meta["trigger"] = trigger
    return meta
