"""Sample sessions written the way the session scripts write them (reports at scale).

Writes the same keys, fields and counters as ``lua/create.lua``, ``visitor.lua``,
``sweep.lua`` and ``settle.lua``, directly and pipelined, spread over the last
``days`` days: abandoned sessions stopped at some flow step with the fields
answered before it (those with an email or phone have a ``lead.abandoned`` event,
mostly delivered, some dead, some still pending but not due for a day, so a running
server leaves them alone; the webhook's health to match) and completed ones. The
report benchmarks and the report tests seed with it.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from .. import keys

__all__ = ["Seeded", "seed"]

DAY_MS = 86_400_000
IDLE_MS = 15 * 60_000
FLOW = ("name", "email", "phone", "message")
QUESTIONS = {
    "name": "What's your name?",
    "email": "What's the best email to reach you?",
    "phone": "And a phone number? (optional)",
    "message": "What can we help you with?",
}
STOP_WEIGHTS = (0.34, 0.31, 0.22, 0.13)  # where visitors give up, by step
FIRST = ("Ada", "Grace", "Linus", "Zoë", "José", "Mei", "Olu", "Anna", "Ravi", "Chloé")
LAST = ("Lovelace", "Hopper", "Torvalds", "Müller", "García", "Chen", "Adeyemi", "Kowalska")
COMPANIES = ("Acme Plumbing", "Globex", "Initech", "Umbrella, Inc.", '"Quoted" Ltd', "=SUM(A1)")
MESSAGES = ("Need a quote for a boiler", "Leaking tap,\nurgent", "Call me after 5pm please")


@dataclass(frozen=True)
class Seeded:
    abandoned: int
    completed: int
    events: int
    seconds: float


def _fields(rng: random.Random, upto: int) -> dict[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    values = {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@example.com",
        "phone": f"+1202555{rng.randrange(10000):04d}",
        "message": rng.choice(MESSAGES),
    }
    out = {name: values[name] for name in FLOW[:upto]}
    if upto > 1 and rng.random() < 0.3:
        out["company"] = rng.choice(COMPANIES)
    if "phone" in out and rng.random() < 0.4:
        out["phone"] = ""  # skipped the optional step
    return out


def _transcript(fields: dict[str, str], step: str | None, start: int) -> list[str]:
    entries: list[dict[str, Any]] = [
        {"from": "bot", "text": "Hi! Leave us a few details and we'll get back to you."}
    ]
    for name in FLOW:
        entries.append(
            {"from": "bot", "text": QUESTIONS[name], "prompt": {"field": name, "kind": "text"}}
        )
        if name == step or name not in fields:
            break
        entries.append({"from": "visitor", "text": fields[name] or "(skipped)", "field": name})
    for seq, entry in enumerate(entries, start=1):
        entry.update(seq=seq, ts=start + seq * 7_000)
    return [json.dumps(entry) for entry in entries]


class _Writer:
    def __init__(self, client: redis.Redis, shards: int, retention_ms: int, now: int) -> None:
        self.pipe: Any = client.pipeline(transaction=False)
        self.shards = shards
        self.ttl = retention_ms
        self.now = now
        self.pending = 0
        self.health: dict[tuple[int, str], dict[str, Any]] = {}
        """The webhook's health per (shard, site): its latest success and failure."""

    def flush(self, force: bool = False) -> None:
        if force or self.pending >= 4000:
            self.pipe.execute()
            self.pending = 0

    def count(self, shard: int, site: str, at: int, field: str) -> None:
        key = keys.site_stats(shard, site, at // DAY_MS)
        self.pipe.hincrby(key, field, 1)
        self.pipe.pexpire(key, self.ttl + DAY_MS)
        self.pending += 2

    def index(self, shard: int, site: str, kind: str, at: int, sid: str) -> None:
        key = keys.site_index(shard, site, kind)
        self.pipe.zadd(key, {sid: at})
        self.pipe.pexpire(key, self.ttl)
        self.pending += 2

    def session(
        self,
        sid: str,
        site: str,
        meta: dict[str, Any],
        fields: dict[str, str],
        transcript: list[str],
    ) -> int:
        shard = keys.shard_of(sid, self.shards)
        s_key, f_key, t_key, ids_key, _ = keys.session_keys(shard, sid)
        self.pipe.hset(s_key, mapping={"site": site, "seq": len(transcript), **meta})
        if fields:
            self.pipe.hset(f_key, mapping=fields)
        self.pipe.rpush(t_key, *transcript)
        self.pipe.hset(
            ids_key, mapping={f"c{n}": n for n in range(1, len(fields) + 1)} or {"c0": 0}
        )
        for key in (s_key, f_key, t_key, ids_key):
            self.pipe.pexpire(key, self.ttl)
        self.pending += 12
        return shard

    def event(self, shard: int, sid: str, site: str, eid: str, at: int, status: str) -> None:
        attempts: list[dict[str, Any]] = []
        record: dict[str, Any] = {
            "type": "lead.abandoned",
            "session": sid,
            "site": site,
            "status": status,
            "created": at,
            "attempts": 0,
        }
        if status == "delivered":
            attempts = [{"status_code": 200, "latency_ms": 84.2, "error": None, "at": at + 90}]
            record["settled"] = at + 180
        elif status == "dead":
            attempts = [
                {"status_code": 500, "latency_ms": 120.5, "error": "HTTP 500", "at": at + 100 * n}
                for n in range(1, 9)
            ]
            record["settled"] = at + 900
        else:
            record["next"] = self.now + DAY_MS  # pending, but not due: a live server waits
            self.pipe.zadd(keys.outbox_due(shard), {eid: self.now + DAY_MS})
            queue = keys.session_events(shard, sid)
            self.pipe.rpush(queue, eid)
            self.pipe.pexpire(queue, self.ttl)
        record["attempts"] = len(attempts)
        self.pipe.hset(keys.event(shard, eid), mapping=record)
        self.pipe.pexpire(keys.event(shard, eid), self.ttl)
        if attempts:
            attempts_key = keys.event_attempts(shard, eid)
            self.pipe.rpush(attempts_key, *(json.dumps(a) for a in attempts))
            self.pipe.pexpire(attempts_key, self.ttl)
        self.pipe.zadd(keys.deliveries(shard), {eid: at})
        self.pending += 8
        if attempts:
            self._health(shard, site, eid, status, attempts[-1]["at"])

    def _health(self, shard: int, site: str, eid: str, status: str, at: int) -> None:
        """The webhook's health as ``settle.lua`` leaves it (its hash is written last)."""
        health = self.health.setdefault((shard, site), {})
        field = "ok" if status == "delivered" else "fail"
        if at > health.get(field, 0):
            health[field] = at
            if status == "dead":
                health["error"] = "HTTP 500"
        if status == "dead":
            dead = keys.destination_dead(shard, site, "webhook")
            self.pipe.zadd(dead, {eid: at})
            self.pipe.pexpire(dead, self.ttl)
            self.pending += 2

    def finish(self) -> None:
        for (shard, site), health in self.health.items():
            key = keys.destination_health(shard, site, "webhook")
            self.pipe.hset(key, mapping=health)
            self.pipe.pexpire(key, self.ttl)
        self.flush(force=True)


def _abandoned(w: _Writer, rng: random.Random, site: str, days: int) -> bool:
    sid = secrets.token_hex(12)
    created = w.now - rng.randrange(days * DAY_MS - IDLE_MS)
    stop = rng.choices(range(len(FLOW)), STOP_WEIGHTS)[0]
    step = FLOW[stop]
    fields = _fields(rng, stop)
    transcript = _transcript(fields, step, created)
    active = created + len(transcript) * 7_000
    abandoned_at = min(active + IDLE_MS, w.now - 1)
    meta = {
        "status": "abandoned",
        "created": created,
        "active": active,
        "idle": IDLE_MS,
        "fwd": "with-contact",
        "tok": secrets.token_hex(32),
        "uid": "v_" + secrets.token_hex(8),
        "step": step,
        "abandons": 1,
        "abandoned_at": abandoned_at,
        "page_url": "https://www.example.com/pricing?utm_source=newsletter",
        "utm_source": "newsletter",
    }
    shard = w.session(sid, site, meta, fields, transcript)
    w.count(shard, site, created, "started")
    w.count(shard, site, abandoned_at, "abandoned")
    w.count(shard, site, abandoned_at, f"stop:{step}")
    w.index(shard, site, "started", created, sid)
    w.index(shard, site, "abandoned", abandoned_at, sid)
    contact = bool(fields.get("email") or fields.get("phone"))
    if contact:
        status = rng.choices(("delivered", "dead", "pending"), (0.85, 0.1, 0.05))[0]
        w.event(shard, sid, site, keys.abandoned_event(sid, 1), abandoned_at, status)
        w.count(shard, site, abandoned_at, "contactable")
        _recovery(w, rng, shard, site, sid, abandoned_at, bool(fields.get("email")))
    return contact


def _recovery(
    w: _Writer, rng: random.Random, shard: int, site: str, sid: str, left: int, email: bool
) -> None:
    """What the recovery report counts (CONTRACT §11): reminders to an email, a link
    opened, a return (by link, reminder or on its own) and sometimes the lead."""
    later = left + rng.randrange(20 * 60_000, 2 * DAY_MS)
    steps = rng.choices((0, 1, 2), (0.3, 0.4, 0.3))[0] if email else 0
    for step in range(1, steps + 1):
        w.count(shard, site, min(left + step * 3_600_000, w.now - 1), f"reminded:{step}")
    opened = rng.random() < 0.35
    via = rng.choices(("link", "reminder:1", "reminder:2", "returned"), (4, 3, 1, 2))[0]
    if via.startswith("reminder:") and int(via[-1]) > steps:
        via = "link"
    if not opened and via != "returned":
        return
    at = min(later, w.now - 1)
    if opened:
        w.count(shard, site, at, "link_opened")
    if rng.random() < 0.55:
        return  # looked, or came back only in spirit
    meta: dict[str, object] = {"recovered": 1, "recovered_by": via, "recovered_at": at}
    w.count(shard, site, at, "recovered")
    w.count(shard, site, at, f"recovered:{via}")
    w.index(shard, site, "recovered", at, sid)
    if rng.random() < 0.6:
        done = min(at + 90_000, w.now - 1)
        meta |= {"status": "completed", "completed_at": done, "step": "done"}
        w.count(shard, site, done, "completed")
        w.count(shard, site, done, "recovered_completed")
        w.index(shard, site, "completed", done, sid)
    w.pipe.hset(keys.session(shard, sid), mapping=meta)
    w.pending += 1


def _completed(w: _Writer, rng: random.Random, site: str, days: int) -> None:
    sid = secrets.token_hex(12)
    created = w.now - rng.randrange(days * DAY_MS - IDLE_MS)
    fields = _fields(rng, len(FLOW))
    transcript = _transcript(fields, None, created)
    done = created + len(transcript) * 7_000
    meta = {
        "status": "completed",
        "created": created,
        "active": done,
        "completed_at": done,
        "idle": IDLE_MS,
        "fwd": "with-contact",
        "tok": secrets.token_hex(32),
        "uid": "v_" + secrets.token_hex(8),
        "step": "done",
    }
    shard = w.session(sid, site, meta, fields, transcript)
    w.count(shard, site, created, "started")
    w.count(shard, site, done, "completed")
    w.index(shard, site, "started", created, sid)
    w.index(shard, site, "completed", done, sid)


def seed(
    client: redis.Redis,
    *,
    abandoned: int,
    completed: int,
    sites: list[str],
    days: int = 30,
    shards: int = 16,
    retention_days: int = 30,
    rng_seed: int = 7,
) -> Seeded:
    """Write the sessions; returns how many of each and how long it took."""
    started = time.perf_counter()
    client.hsetnx(keys.META, "shards", shards)
    sec, usec = client.time()
    w = _Writer(client, shards, retention_days * DAY_MS, int(sec) * 1000 + int(usec) // 1000)
    rng = random.Random(rng_seed)
    events = 0
    for n in range(abandoned):
        events += _abandoned(w, rng, sites[n % len(sites)], days)
        w.flush()
    for n in range(completed):
        _completed(w, rng, sites[n % len(sites)], days)
        w.flush()
    w.finish()
    return Seeded(abandoned, completed, events, time.perf_counter() - started)
