"""The operator's commands: report, deliveries, test-event, agents, admin-url.

They run in-process against Redis (the configured one, a running ``chatlead serve``'s
embedded server, or one started for the command), reading what the admin API reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from .config import Settings, load_settings
from .embedded import redis_for, running_embedded
from .errors import ChatleadError
from .site_config import load_sites
from .sites import Site, no_site_message

__all__ = [
    "TEST_EVENT_WAIT_S",
    "add_admin_commands",
    "admin",
    "admin_url",
    "base_url",
    "first_attempt",
]

TEST_EVENT_WAIT_S = 30.0


def add_admin_commands(commands: Any) -> None:
    """The CLI side of the admin API: reports, the delivery log, test events."""
    report = commands.add_parser("report", help="reports (as GET /api/reports/...)")
    kinds = report.add_subparsers(dest="report", required=True)
    abandoned = kinds.add_parser("abandoned", help="abandoned leads with totals and drop-off")
    abandoned.add_argument("--since", default=None, help="ISO date/time or 24h, 7d (default 30d)")
    abandoned.add_argument("--until", default=None, help="ISO date/time or relative (default now)")
    abandoned.add_argument("--site", default=None, help="one site (default all)")
    abandoned.add_argument("--format", choices=("table", "csv", "json"), default="table")
    abandoned.add_argument("--limit", type=int, default=None, help="rows (table: default 50)")
    recovery = kinds.add_parser("recovery", help="what became of abandoned chats")
    recovery.add_argument("--since", default=None, help="ISO date/time or 24h, 7d (default 30d)")
    recovery.add_argument("--until", default=None, help="ISO date/time or relative (default now)")
    recovery.add_argument("--site", default=None, help="one site (default all)")
    recovery.add_argument("--format", choices=("table", "json"), default="table")
    deliveries = commands.add_parser("deliveries", help="the delivery log")
    actions = deliveries.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument("--status", choices=("pending", "delivered", "dead"), default=None)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    replay = actions.add_parser("replay", help="deliver a delivered or dead event again")
    replay.add_argument("id", help="event id (evt_...)")
    agents = commands.add_parser("agents", help="people who may answer live chats")
    verbs = agents.add_subparsers(dest="action", required=True)
    adding = verbs.add_parser("add", help="add an agent; prints its token (shown once)")
    adding.add_argument("id", help="lowercase letters, digits, . - _")
    adding.add_argument("name", help="shown to visitors")
    adding.add_argument(
        "--site", dest="sites", action="append", default=[], help="a site it may see (repeat)"
    )
    verbs.add_parser("list", help="every agent")
    removing = verbs.add_parser("remove", help="remove an agent; its token stops at once")
    removing.add_argument("id")
    links = commands.add_parser("resume-keys", help="the keys that sign resume links (§11)")
    link_verbs = links.add_subparsers(dest="action", required=True)
    link_verbs.add_parser(
        "rotate", help="sign with a new key; links of the current one keep working"
    )
    test_event = commands.add_parser(
        "test-event", help="send a sample lead to a site's destinations; show each first attempt"
    )
    test_event.add_argument("site")
    test_event.add_argument("--destination", default=None, help="only this destination (name)")
    test_event.add_argument(
        "--wait",
        type=float,
        default=TEST_EVENT_WAIT_S,
        help=f"seconds to wait for the first attempt (default {TEST_EVENT_WAIT_S:g})",
    )


def base_url(host: str, port: int) -> str:
    """The server's address as a browser on this machine reaches it."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


async def login_code(settings: Settings) -> str:
    """A new single-use login code, on the Redis of ``settings`` (which has a URL)."""
    from .admin.auth import Credentials
    from .redis_client import connect_redis

    assert settings.redis_url is not None
    client = connect_redis(settings.redis_url)
    try:
        return await Credentials(client, settings.admin_token).new_code()
    finally:
        await client.aclose()


def admin_url(args: argparse.Namespace) -> int:
    """Print a sign-in link with a new login code (as ``chatlead serve`` does at start)."""
    from .admin.auth import login_url

    settings = at_master(load_settings())
    if settings.redis_url is None:
        url = running_embedded(settings)
        if url is None:
            raise ChatleadError(
                f"no chatlead serve is running on the embedded server in "
                f"{settings.data_dir.resolve()} and CHATLEAD_REDIS_URL is not set"
            )
        settings = settings.model_copy(update={"redis_url": url})
    code = asyncio.run(login_code(settings))
    print(login_url(args.base or base_url(settings.host, settings.port), code))
    return 0


def at_master(settings: Settings) -> Settings:
    """With ``REDIS_SENTINEL``: ``REDIS_URL`` at Sentinel's master now (these commands
    are short; the server itself follows failovers)."""
    if not settings.redis_sentinel:
        return settings
    from .redis_client import find_master

    url = find_master(settings.redis_sentinel, settings.redis_master, settings.redis_url)
    return settings.model_copy(update={"redis_url": url, "redis_sentinel": None})


def admin(args: argparse.Namespace) -> int:
    settings = at_master(load_settings())
    sites = load_sites(settings)
    site_id = getattr(args, "site", None)  # report --site, test-event <site>
    if site_id is not None and site_id not in sites:
        raise ChatleadError(no_site_message(site_id, sites))
    if settings.redis_url is None and (url := running_embedded(settings)):
        settings = settings.model_copy(update={"redis_url": url})
    # still no URL: no chatlead serve holds the embedded server, so nothing delivers
    delivering = settings.redis_url is not None
    with redis_for(settings) as ready:
        return asyncio.run(_admin_command(ready, sites, args, delivering=delivering))


async def _admin_command(
    settings: Settings, sites: dict[str, Site], args: Any, *, delivering: bool
) -> int:
    from .app import open_store
    from .runtime import Runtime

    store = await open_store(settings)
    try:
        runtime = Runtime(settings, sites, store)
        if args.command == "report":
            return await _report(runtime, args)
        if args.command == "test-event":
            wait = args.wait if delivering else 0.0
            return await _test_event(runtime, args.site, wait, args.destination)
        if args.command == "agents":
            return await _agents(runtime, args)
        if args.command == "resume-keys":
            ring = await runtime.links.rotate()
            print(f"resume links are now signed with key {ring.current.id:08x}; links of the")
            print("key before it keep working until the next rotation")
            return 0
        if args.action == "replay":
            return await _replay(runtime, args.id)
        return await _deliveries(runtime, args)
    finally:
        await store.aclose()


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


async def _report(runtime: Any, args: Any) -> int:
    from pydantic import TypeAdapter

    from .admin.csv import csv_lines
    from .admin.params import iso_ms, parse_period
    from .admin.queries import Reader
    from .admin.rows import AbandonedRow
    from .admin.summary import Summary

    reader = Reader(runtime)
    sites = reader.sites(args.site)
    period = parse_period(args.since, args.until, await reader.now_ms())
    if args.report == "recovery":
        return await _recovery(reader, sites, period, args.format)
    if args.format == "table":
        return await _report_table(reader, sites, period, args.limit or 50)
    out = sys.stdout
    rows = _at_most(reader.abandoned_chunks(sites, period), args.limit)
    if args.format == "csv":
        out.write(next(csv_lines(())))
        async for chunk in rows:
            out.write("".join(csv_lines([chunk], header=False)))
        return 0
    summary = TypeAdapter(Summary).dump_json(await reader.summary(sites, period))
    since, until = iso_ms(period.since_ms), iso_ms(period.until_ms)
    out.write(f'{{"site": {json.dumps(args.site)}, "since": "{since}", "until": "{until}", ')
    out.write(f'"summary": {summary.decode()}, "items": [')
    row_json, separator = TypeAdapter(AbandonedRow), ""
    async for chunk in rows:
        for values in chunk:
            row = AbandonedRow(*values)
            out.write(separator + row_json.dump_json(row).decode())
            separator = ","
    out.write("]}\n")
    return 0


async def _recovery(reader: Any, sites: list[Site], period: Any, form: str) -> int:
    from pydantic import TypeAdapter

    from .admin.recovery_report import RecoveryReport

    report = await reader.recovery(sites, period)
    if form == "json":
        sys.stdout.write(TypeAdapter(RecoveryReport).dump_json(report).decode() + "\n")
        return 0
    t = report.totals
    median = report.median_seconds_to_recover
    print(f"{report.first_day} .. {report.last_day}")
    for stage in report.stages:
        print(f"{stage.stage:<16} {stage.count:>7}")
    print(f"recovery rate    {t.recovery_rate:>7.1%}")
    print(f"median wait      {'-' if median is None else f'{median:.0f}s':>7}")
    print("reminded by step " + ", ".join(f"{k}: {v}" for k, v in t.reminded.items()))
    print("brought back by  " + (", ".join(f"{k}: {v}" for k, v in t.recovered_by.items()) or "-"))
    return 0


async def _at_most(chunks: AsyncIterator[list[Any]], limit: int | None) -> AsyncIterator[list[Any]]:
    left = limit
    async for chunk in chunks:
        if left is not None:
            chunk, left = chunk[:left], left - len(chunk[:left])
        if chunk:
            yield chunk
        if left == 0:
            return


async def _report_table(reader: Any, sites: list[Site], period: Any, limit: int) -> int:
    s = await reader.summary(sites, period)
    print(
        f"{s.first_day} .. {s.last_day}: {s.started} started, {s.completed} completed, "
        f"{s.abandoned} abandoned ({s.abandonment_rate:.1%}), {s.recovered} recovered"
    )
    print("drop-off (stopped/reached): " + ", ".join(
        f"{d.step} {d.stopped}/{d.reached}" for d in s.drop_off
    ) + "\n")  # fmt: skip
    rows, _ = await reader.abandoned_page(sites, period, None, max(1, min(limit, 1000)))
    headers = ["abandoned_at", "site", "step", "name", "email", "phone", "delivery", "session"]
    cells = [
        [r.abandoned_at[:16], r.site, r.step, r.name or "", r.email or "", r.phone or "",
         r.delivery, r.session_id]
        for r in rows
    ]  # fmt: skip
    print(_table(headers, cells))
    return 0


async def _deliveries(runtime: Any, args: Any) -> int:
    from pydantic import TypeAdapter

    from .admin.deliveries import DeliveryItem
    from .admin.queries import Reader

    items, _ = await Reader(runtime).deliveries(args.status, None, max(1, min(args.limit, 1000)))
    if args.format == "json":
        sys.stdout.write(TypeAdapter(list[DeliveryItem]).dump_json(items).decode() + "\n")
        return 0
    cells = [
        [d.created_at[:19], d.status, d.event, d.site, d.destination, str(len(d.attempts)),
         (d.attempts[-1].error or str(d.attempts[-1].status_code or "ok")) if d.attempts else "",
         d.id]
        for d in items
    ]  # fmt: skip
    headers = ["created_at", "status", "event", "site", "destination", "tries", "last", "id"]
    sys.stdout.write(_table(headers, cells) + "\n")
    return 0


async def _agents(runtime: Any, args: Any) -> int:
    from .agents import Agents, agent_problem

    agents = Agents(runtime.store.redis)
    if args.action == "add":
        problem = agent_problem(args.id, args.name, args.sites, runtime.sites)
        if problem is not None:
            raise ChatleadError(f"{problem[0]}: {problem[1]}")
        made = await agents.add(args.id, args.name, args.sites)
        if made is None:
            raise ChatleadError(f"an agent {args.id!r} exists; remove it first")
        print(f"agent {made.id} ({made.name}) added; its token, shown this once:\n{made.token}")
        return 0
    if args.action == "remove":
        if not await agents.remove(args.id):
            raise ChatleadError(f"no agent {args.id!r}")
        print(f"agent {args.id} removed; its token no longer works")
        return 0
    rows = [[a.id, a.name, ",".join(a.sites) or "all"] for a in await agents.all()]
    sys.stdout.write(_table(["id", "name", "sites"], rows) + "\n")
    return 0


async def _replay(runtime: Any, event_id: str) -> int:
    from .admin.commands import replay

    outcome = await replay(runtime, event_id)
    messages = {
        "ok": f"{event_id}: queued for delivery again",
        "pending": f"{event_id}: already waiting for delivery",
        "missing": f"{event_id}: no such event",
    }
    print(messages[outcome], file=sys.stdout if outcome == "ok" else sys.stderr)
    return 0 if outcome == "ok" else 1


async def _test_event(
    runtime: Any, site_id: str, wait_s: float, destination: str | None = None
) -> int:
    """Queue a sample lead to each destination (or one) and report each first delivery
    attempt (0: every one was delivered)."""
    from .admin.commands import send_test_event
    from .admin.queries import Reader

    reader, deadline = Reader(runtime), time.monotonic() + wait_s
    failed = 0
    for event_id in await send_test_event(runtime, site_id, destination):
        item = await reader.delivery(event_id)
        while item is not None and item.status == "pending" and not item.attempts:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
            item = await reader.delivery(event_id)
        delivered, line = first_attempt(item, wait_s)
        print(f"{event_id}: {line}", file=sys.stdout if delivered else sys.stderr)
        failed += not delivered
    return 0 if not failed else 1


def first_attempt(item: Any, waited_s: float) -> tuple[bool, str]:
    """Whether a test event was delivered, and one line saying how its first attempt went."""
    if item is None:
        return False, "the event is gone (erased or expired)"
    last = item.attempts[-1] if item.attempts else None
    if item.status == "delivered":
        if last is None or last.status_code is None:
            return True, "delivered to the inbox (/admin/inbox)"
        return True, f"delivered: HTTP {last.status_code} in {last.latency_ms or 0:.0f} ms"
    if last is None:
        if not waited_s:
            return (
                False,
                "queued; no chatlead serve is running to deliver it (it will when one starts)",
            )
        return False, (
            f"queued, not attempted within {waited_s:g} s; "
            "is chatlead serve or chatlead worker running on this Redis?"
        )
    why = last.error or f"HTTP {last.status_code}"
    if item.status == "dead":
        return False, f"failed: {why} (dead; fix it, then chatlead deliveries replay {item.id})"
    return False, f"failed: {why}; will retry at {item.next_attempt_at}"
