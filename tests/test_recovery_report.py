"""The recovery report (CONTRACT §11): the pure arithmetic, then 10,000 sessions written
by the real scripts on a real Redis, each with a planned fate, counted by hand and
compared with ``GET /api/reports/recovery`` and ``chatlead report recovery``."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.admin.params import DAY_MS, Period
from chatlead.admin.recovery_report import RecoveredSession, recovery_report
from chatlead.app import open_store
from chatlead.resume_keys import ResumeLinks
from chatlead.session import Verdict
from chatlead.sites import Site
from chatlead.store import Store

from tests.conftest import ROOT, admin_headers, settings_for

SESSIONS = int(os.environ.get("CHATLEAD_RECOVERY_SESSIONS", "10000"))


def _back(sid: str, via: str, seconds: float, status: str = "open") -> RecoveredSession:
    return RecoveredSession(sid, "acme", "x", f"2026-12-0{len(sid)}", via, status, seconds)


def test_the_arithmetic() -> None:
    period = Period(20_000 * DAY_MS, 20_002 * DAY_MS)
    counters = [
        ("acme", 20_000, {"abandoned": "6", "contactable": "4", "reminded:1": "3"}),
        ("acme", 20_001, {"abandoned": "4", "link_opened": "2", "recovered": "3"}),
        ("acme", 20_001, {"recovered:link": "2", "recovered:returned": "1"}),
        ("acme", 20_001, {"recovered_completed": "1", "reminded:2": "1"}),
        ("other", 20_001, {"abandoned": "99"}),  # not a site in scope
        ("acme", 19_000, {"abandoned": "99"}),  # not a day of the period
    ]
    sessions = [_back("a", "link", 10), _back("bb", "link", 30), _back("ccc", "returned", 20)]
    report = recovery_report([Site(id="acme")], period, counters, sessions)
    totals = report.totals
    assert (totals.abandoned, totals.contactable, totals.link_opened) == (10, 4, 2)
    assert totals.reminded == {"1": 3, "2": 1, "3": 0}
    assert totals.recovered_by == {"link": 2, "returned": 1}
    assert totals.recovery_rate == 0.3 and totals.completed_after_recovery == 1
    assert report.median_seconds_to_recover == 20
    assert [(s.stage, s.count) for s in report.stages] == [
        ("abandoned", 10),
        ("contactable", 4),
        ("reminded", 3),
        ("opened", 2),
        ("recovered", 3),
        ("completed", 1),
    ]
    assert [s.session_id for s in report.sessions] == ["ccc", "bb", "a"]  # newest first
    empty = recovery_report([Site(id="acme")], period, [], [])
    assert empty.totals.recovery_rate == 0.0 and empty.median_seconds_to_recover is None


# --- 10,000 sessions, counted by hand ------------------------------------------------

META = {"site": "acme", "idle": "1", "fwd": "always", "tok": "x", "uid": "u", "step": "email"}


def _fate(n: int) -> dict[str, Any]:
    """What happens to session n: its contact, and how (if at all) it comes back."""
    contact = ("email", "phone", "none")[n % 3]
    back = None
    if n % 5 == 0:
        back = "link"
    elif n % 11 == 0:
        back = "reminder:2"
    elif n % 7 == 0:
        back = "returned"
    # a link opened by the visitor who comes back through it, or by one who only looks
    opened = back in ("link", "reminder:2") or (back is None and n % 13 == 0)
    return {"contact": contact, "back": back, "opened": opened, "completes": n % 4 == 0}


async def _event(store: Store, sid: str, seq: int, text: str, **extra: Any) -> int:
    entry = {"from": "visitor", "text": text}
    result = await store.visitor_event(sid, secrets.token_hex(6), seq, entry, [], {}, "x", False)
    if extra:
        result = await store.visitor_event(
            sid, secrets.token_hex(6), result.seq, None, [], extra, "x", False
        )
    assert result.kind is Verdict.OK, result
    return result.seq


async def _live(sid: str, n: int, store: Store) -> None:
    fate = _fate(n)
    updates = {"email": f"v{n}@example.com"} if fate["contact"] == "email" else {}
    if fate["contact"] == "phone":
        updates = {"phone": "+12025550143"}
    await store.create_session(sid, META, [{"from": "bot", "text": "Your email?"}])
    await _event(store, sid, 1, "hi", **updates)


async def _return(sid: str, n: int, store: Store, links: ResumeLinks) -> None:
    fate = _fate(n)
    if fate["back"] == "reminder:2":
        await links.note_step(sid, 2)
    if fate["opened"]:
        await links.mark_resumed(sid)
    if fate["back"] is None:
        return
    record = await store.load_session(sid)
    assert record is not None
    seq = await _event(store, sid, record.seq, "I'm back")
    if fate["completes"]:
        result = await store.visitor_event(sid, "done", seq, None, [], {}, "done", True, ())
        assert result.kind is Verdict.OK


async def _in_batches(calls: list[Any], size: int = 400) -> None:
    for start in range(0, len(calls), size):
        await asyncio.gather(*calls[start : start + size])


def _by_hand() -> dict[str, Any]:
    fates = [_fate(n) for n in range(SESSIONS)]
    back = [f for f in fates if f["back"]]
    return {
        "abandoned": SESSIONS,
        "contactable": sum(f["contact"] != "none" for f in fates),
        "link_opened": sum(f["opened"] for f in fates),
        "recovered": len(back),
        "recovered_by": dict(sorted(Counter(f["back"] for f in back).items())),
        "completed_after_recovery": sum(f["completes"] for f in back),
    }


@pytest.mark.slow
async def test_ten_thousand_sessions_match_a_hand_count(
    app_factory: Any, redis_url: str, rds: aioredis.Redis, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    config = tmp_path / "chatlead.toml"
    config.write_text('[sites.acme]\ncompany = "Acme"\n')
    store = await open_store(settings_for(redis_url, config=config))
    links = ResumeLinks(store.redis, 3600, "https://chat.example", store.shards, 86_400_000)
    ids = [secrets.token_hex(12) for _ in range(SESSIONS)]
    try:
        started = time.monotonic()
        await _in_batches([_live(sid, n, store) for n, sid in enumerate(ids)])
        seeded = time.monotonic()
        flagged = 0
        while flagged < SESSIONS:
            flagged += len((await store.sweep(2000)).flagged)
        swept = time.monotonic()
        # from here on the visitors who come back stay (no second abandonment)
        async with rds.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hset(keys.session(keys.shard_of(sid, 16), sid), "idle", 3_600_000)
            await pipe.execute()
        await _in_batches([_return(sid, n, store, links) for n, sid in enumerate(ids)])
        print(
            f"seeded {seeded - started:.1f}s, swept {swept - seeded:.1f}s,"
            f" returned {time.monotonic() - swept:.1f}s"
        )
        # the hand count's median: from what each session hash says happened
        waits = []
        for n, sid in enumerate(ids):
            if _fate(n)["back"]:
                left, back = await rds.hmget(
                    keys.session(keys.shard_of(sid, 16), sid), "abandoned_at", "recovered_at"
                )
                waits.append((int(back) - int(left)) / 1000)
    finally:
        await store.aclose()
    expected = _by_hand()
    app = await app_factory(config=config, public_url="https://chat.example")
    answer = await http.get(
        f"{app.base}/api/reports/recovery?site=acme", headers=admin_headers(redis_url)
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    totals = report["totals"]
    assert {k: totals[k] for k in expected} == expected
    assert totals["recovery_rate"] == round(expected["recovered"] / SESSIONS, 4)
    assert totals["reminded"] == {"1": 0, "2": 0, "3": 0}  # none sent: no SMTP here
    assert report["median_seconds_to_recover"] == round(statistics.median(waits), 3)
    assert len(report["sessions"]) == 100
    assert {s["recovered_by"] for s in report["sessions"]} <= set(expected["recovered_by"])
    print(f"recovery report over {SESSIONS} sessions: {json.dumps(totals)}")

    env = {**os.environ, "CHATLEAD_REDIS_URL": redis_url, "CHATLEAD_CONFIG": str(config)}
    assert json.loads(_cli(env, "--format", "json"))["totals"] == totals
    table = _cli(env)
    assert f"abandoned        {SESSIONS:>7}" in table
    assert f"recovered        {expected['recovered']:>7}" in table


def _cli(env: dict[str, str], *extra: str) -> str:
    """What ``chatlead report recovery --site acme`` prints."""
    done = subprocess.run(
        [sys.executable, "-m", "chatlead", "report", "recovery", "--site", "acme", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
