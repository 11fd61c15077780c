"""Every Redis key name chatlead uses, and the lead event ids within them, in one place.

All keys start with ``chatlead:``. Keys that belong to a session carry the
session's shard as a hash tag (``chatlead:{7}:...``) so each atomic step (one Lua
script) touches one hash slot and runs unchanged on Redis Cluster. Each shard has
its own deadline set, outbox and report indexes. Keys shared across shards (meta,
inbox, CRM rate budgets) are never touched from a per-session script.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zlib

__all__ = [
    "ABANDONED_EVENT",
    "AGENTS",
    "AGENT_TOKENS",
    "COMPLETED_EVENT",
    "EVENT_ID",
    "HEALTH_WINDOW_MS",
    "HOOKS",
    "META",
    "NOTIFY_CHANNEL",
    "REMINDER_EVENT",
    "REMINDER_SUFFIX",
    "RESUME_KEYS",
    "UNSUBSCRIBE_KEY",
    "WAITING_EVENT",
    "abandoned_event",
    "completed_event",
    "event_destination",
    "event_session",
    "event_suffix",
    "for_destination",
    "ref_field",
    "inbox_pushed",
    "reminder_event",
    "suppressed",
    "session_events_glob",
    "shard_of",
    "test_event",
    "user_sessions",
]

PREFIX = "chatlead:"

# --- lead event ids: ``evt_<session>_<what>``, so an id alone locates its shard ------

COMPLETED_EVENT = "evt_%s_completed"
"""``string.format`` pattern (session id) for a session's ``lead.completed`` event;
the scripts get it as an argument."""
ABANDONED_EVENT = "evt_%s_abandoned_%d"
"""Pattern (session id, the abandonment's number) for ``lead.abandoned`` events."""
WAITING_EVENT = "evt_%s_waiting_%d"
"""Pattern (session id, the wait's number) for ``visitor.waiting`` events (§10)."""
REMINDER_EVENT = "evt_%s_reminder_%d_%d"
"""Pattern (session id, the abandonment's number, the reminder step from 1) for
``visitor.reminder`` events; each has the suffix :data:`REMINDER_SUFFIX`."""
REMINDER_SUFFIX = ":reminder"
"""The event id suffix of the built-in reminder destination (its own queue and health)."""
EVENT_ID = re.compile(
    r"^evt_([0-9a-f]{24})_"
    r"(completed|abandoned_\d{1,6}|waiting_\d{1,6}|reminder_\d{1,6}_\d|test)"
    r"(?::([a-z0-9][a-z0-9_-]{0,39}))?$"
)
"""An event id: the base id of one event, then ``:<destination>`` for every destination
but ``webhook`` (whose ids keep the single-destination form): CONTRACT §9."""


def completed_event(session_id: str) -> str:
    return COMPLETED_EVENT % session_id


def abandoned_event(session_id: str, number: int) -> str:
    return ABANDONED_EVENT % (session_id, number)


def reminder_event(session_id: str, number: int, step: int) -> str:
    """The id of one reminder step's event (its destination suffix included)."""
    return REMINDER_EVENT % (session_id, number, step) + REMINDER_SUFFIX


def test_event(session_id: str) -> str:
    return f"evt_{session_id}_test"


def session_events_glob(session_id: str) -> str:
    """A ``MATCH`` pattern for every event id of one session."""
    return f"evt_{session_id}_*"


def _parts(event_id: str) -> re.Match[str]:
    match = EVENT_ID.match(event_id)
    if match is None:
        raise ValueError(f"not an event id: {event_id!r}")
    return match


def event_session(event_id: str) -> str:
    """The session an event id belongs to.

    Raises:
        ValueError: not an event id.
    """
    return _parts(event_id).group(1)


def event_suffix(event_id: str) -> str:
    """The destination part of an event id: ``""`` (the webhook) or ``":<name>"``."""
    name = _parts(event_id).group(3)
    return f":{name}" if name else ""


def event_destination(event_id: str, default: str = "webhook") -> str:
    """The name of the destination an event id is for (``default``: the webhook's, or
    an id that is no event id)."""
    match = EVENT_ID.match(event_id)
    return (match.group(3) if match else None) or default


def for_destination(event_id: str, suffix: str) -> str:
    """The id of one destination's copy of a base event id."""
    return event_id + suffix


def ref_field(suffix: str) -> str:
    """The session hash field holding a destination's CRM record id (``refId``)."""
    return "ref_id" + suffix


# --- keys ---------------------------------------------------------------------------
META = PREFIX + "meta"
"""Hash: ``shards`` (fixed at first start)."""
AGENTS = PREFIX + "agents"
"""Hash: agent id -> the agent as JSON, with its token's hash (:mod:`chatlead.agents`)."""
AGENT_TOKENS = PREFIX + "agent-tokens"
"""Hash: SHA-256 of an agent token -> agent id."""
DURABILITY_PROBE = PREFIX + "durability:probe"
"""A counter the readiness check bumps, then waits for (``DURABILITY``, §14)."""
HOOKS = PREFIX + "hooks"
"""Hash: REST hook id -> the hook as JSON (:mod:`chatlead.hooks`)."""
NOTIFY_CHANNEL = PREFIX + "notify"
"""Pub/sub: JSON ``{"abandoned": [session ids]}`` so servers can tell live sockets,
``{"hooks": true}`` when the REST hooks changed, ``{"resume_keys": true}`` when the
resume links' keys rotated, ``{"agent_removed": id}``, or for a
session's visitor socket ``{"live": session id}`` (an agent changed it: read it again)
and ``{"typing": session id}`` (CONTRACT §10). The Lua scripts name it literally."""

INBOX = PREFIX + "inbox"
"""List of delivered inbox leads (JSON), newest first, pruned by retention."""
INBOX_TESTS = PREFIX + "inbox:tests"
"""List of delivered test events (JSON), newest first, capped."""
RESUME_KEYS = PREFIX + "resume-keys"
"""String: the resume links' signing keys as JSON ``{"current", "previous"}``
(:mod:`chatlead.resume_links`), made at first use with ``SET NX``."""

UNSUBSCRIBE_KEY = PREFIX + "unsubscribe-key"
"""String: the key (hex) unsubscribe links are signed with (:mod:`chatlead.unsubscribe`),
made at first use with ``SET NX``."""


def suppressed(site: str) -> str:
    """Set: SHA-256 hex of each lowercased address that gets no more reminders from
    ``site`` (unsubscribed, or refused by SMTP). Global: only Python touches it."""
    return f"{PREFIX}suppressed:{site}"


def ip_slots(ip: str) -> str:
    """Sorted set: open socket id -> lease expiry (ms), for one client IP.

    Not hash-tagged: each cap key is its own slot, touched by one-key scripts only.
    """
    return f"{PREFIX}conns:ip:{ip}"


def new_sessions(network: str) -> str:
    """Hash: the new-session token bucket of one client network (its own slot)."""
    return f"{PREFIX}rate:sessions:{network}"


def booking(site: str, slot: str) -> str:
    """String: the session id holding appointment slot ``slot`` (its UTC start) on a
    site (its own slot; :mod:`chatlead.booking`)."""
    return f"{PREFIX}booking:{site}:{slot}"


def user_sessions(site: str, user_id: str) -> str:
    """Sorted set: session id -> created (ms), the sessions of one identified user on a
    site (§13; its own slot). The id is hashed: a key name is no place for it."""
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:32]
    return f"{PREFIX}user:{site}:{digest}"


def network_leads(site: str, network: str) -> str:
    """Sorted set: session id -> when, the leads one client network completed on a site
    in the last hour (``max_leads_per_ip``; its own slot)."""
    return f"{PREFIX}rate:leads:{site}:{network}"


def site_slots(site: str) -> str:
    """Sorted set: open socket id -> lease expiry (ms), for one site."""
    return f"{PREFIX}conns:site:{site}"


def shard_of(session_id: str, shards: int) -> int:
    """The shard a session lives in: stable for a given shard count."""
    return zlib.crc32(session_id.encode()) % shards


@functools.cache
def tag(shard: int) -> str:
    """The hash-tagged prefix of every key in ``shard``."""
    return f"{PREFIX}{{{shard}}}:"


# --- per session (all in the session's shard) -------------------------------


def session(shard: int, session_id: str) -> str:
    """Hash: status, site, seq, timestamps, step, user id, token hash, page data, refId."""
    return f"{tag(shard)}s:{session_id}"


def fields(shard: int, session_id: str) -> str:
    """Hash: captured lead fields, canonical name -> value."""
    return f"{tag(shard)}s:{session_id}:fields"


def transcript(shard: int, session_id: str) -> str:
    """List of JSON entries ``{"seq","from","text","ts","field"?,"prompt"?}``."""
    return f"{tag(shard)}s:{session_id}:transcript"


def client_ids(shard: int, session_id: str) -> str:
    """Hash: client frame id -> seq it was acked with (dedupe)."""
    return f"{tag(shard)}s:{session_id}:ids"


def session_events(shard: int, session_id: str, suffix: str = "") -> str:
    """List of this session's undelivered event ids for one destination (its event id
    suffix), oldest first: each destination keeps the session's order on its own."""
    return f"{tag(shard)}s:{session_id}:events{suffix}"


def session_keys(shard: int, session_id: str) -> list[str]:
    """Every key of one session, in the order the Lua scripts expect them."""
    return [
        session(shard, session_id),
        fields(shard, session_id),
        transcript(shard, session_id),
        client_ids(shard, session_id),
        session_events(shard, session_id),
    ]


# --- per shard --------------------------------------------------------------


def watch_channel(shard: int) -> str:
    """Sharded pub/sub channel: the id of every session of the shard that changed, for
    the agent consoles (``SPUBLISH`` in the scripts); a process subscribes only while an
    agent of its own is connected."""
    return f"{tag(shard)}watch"


def deadlines(shard: int) -> str:
    """Sorted set: open session id -> a time (ms, Redis clock) at or before its deadline.

    The session hash holds the deadline itself; the sweeper re-queues a session whose
    stored deadline is later than its score (see ``visitor.lua``, ``sweep.lua``).
    """
    return f"{tag(shard)}deadlines"


def outbox_due(shard: int) -> str:
    """Sorted set: event id -> when its next delivery attempt is due (ms)."""
    return f"{tag(shard)}outbox"


def event(shard: int, event_id: str) -> str:
    """Hash: type, session id, site, status, created/next attempt times, lease."""
    return f"{tag(shard)}e:{event_id}"


def event_attempts(shard: int, event_id: str) -> str:
    """List of JSON attempt records, oldest first."""
    return f"{tag(shard)}e:{event_id}:attempts"


def deliveries(shard: int) -> str:
    """Sorted set: event id -> created (ms); the delivery log index."""
    return f"{tag(shard)}deliveries"


def site_index(shard: int, site: str, kind: str) -> str:
    """Sorted set: session id -> time (ms) it started/completed/abandoned/recovered."""
    return f"{tag(shard)}idx:{site}:{kind}"


def site_stats(shard: int, site: str, day: int) -> str:
    """Hash of counters for one site and UTC day (days since epoch)."""
    return f"{tag(shard)}stats:{site}:{day}"


# --- destination health (per shard: settle.lua writes them with the outcome) ----------

HEALTH_WINDOW_MS = 3_600_000
"""How far back a destination's failed attempts count (``HOUR_MS`` in ``_health.lua``)."""


def destination_health(shard: int, site: str, destination: str) -> str:
    """Hash of one destination of a site, this shard's share: ``ok`` (last delivered
    attempt, ms), ``fail`` (last failed attempt, ms), ``error`` (its error as the
    delivery log shows it, first 120 bytes). TTL: the retention, pushed forward by
    each attempt (``_health.lua`` builds the same name)."""
    return f"{tag(shard)}health:{site}/{destination}"


def destination_failures(shard: int, site: str, destination: str) -> str:
    """Sorted set: ``<event id>#<attempt number>`` -> when, one per failed attempt of
    the last :data:`HEALTH_WINDOW_MS` (older ones are trimmed by each failure; TTL that
    window)."""
    return destination_health(shard, site, destination) + ":failures"


def destination_dead(shard: int, site: str, destination: str) -> str:
    """Sorted set: event id -> when it went dead, for the destination's events that are
    dead now (a replay or a delivery takes one out; trimmed to the retention, and its
    TTL)."""
    return destination_health(shard, site, destination) + ":dead"


# --- report indexes (read by the admin API and erase) -------------------------

INDEX_KINDS = ("started", "completed", "abandoned", "recovered", "spam")
"""Every ``kind`` of :func:`site_index` the session scripts write."""


# --- the inbox's handled marks (global, like the inbox) ------------------------

INBOX_HANDLED = PREFIX + "inbox:handled"
"""Sorted set: inbox event id -> when an owner marked it handled (ms); pruned by retention."""


# --- admin credentials (global) ---------------------------------------------------

ADMIN_TOKEN = PREFIX + "admin:token"
"""String: the admin token made at first start when ``CHATLEAD_ADMIN_TOKEN`` is unset."""
ADMIN_GENERATION = PREFIX + "admin:generation"
"""Integer: bumped by each sign-out; part of every login cookie's MAC."""


def login_code(digest: str) -> str:
    """String with a 24 h expiry: one unused login code, by the SHA-256 hex of the code."""
    return f"{PREFIX}admin:code:{digest}"


def auth_failures(network: str) -> str:
    """Integer with a one-minute expiry: failed admin sign-ins from one client network."""
    return f"{PREFIX}rate:authfail:{network}"


def inbox_pushed(inbox: str) -> str:
    """Hash: event id -> when it was pushed into the ``inbox`` list (``INBOX`` or
    ``INBOX_TESTS``). Tagged with the list's own name, so both share a hash slot."""
    return f"{inbox}:pushed:{{{inbox}}}"
