"""A CRM-side endpoint for chatlead's lead webhooks: copy it and adapt ``save_lead``.

chatlead POSTs each lead event (``lead.completed``, ``lead.abandoned``, ``lead.test``)
as JSON ``{"type", "timestamp", "data": <ExternalLead>}`` with Standard Webhooks
headers. For every ``POST /hook`` this endpoint:

1. reads at most ``--max-body`` bytes (default 4 MiB) while the body streams in and
   answers 413 past it, so a huge or endless body is never held in memory;
2. verifies ``webhook-signature`` over ``webhook-id``, ``webhook-timestamp`` and the
   body with the ``standardwebhooks`` package: 401 when it does not match or the
   timestamp is more than 5 minutes off;
3. dedupes on ``webhook-id`` in SQLite (a file, so it holds across restarts and for
   several processes on one machine): chatlead sends an event again with the same id
   after a timeout, a crash or a replay, and a repeat is answered 200 without being
   stored twice;
4. saves the lead in the same SQLite transaction (one row per chat session, updated
   when an abandoned session later completes) and prints one line.

How chatlead reads the answer: 2xx is done; 5xx, 408 and 429 are retried; any other
4xx (a wrong secret: 401) is a dead letter at once, to be replayed after the fix.

Run it (the secret is the one chatlead signs with, ``CHATLEAD_WEBHOOK_SECRET``)::

    RECEIVER_SECRET=whsec_... python examples/receiver.py --port 9000 --db leads.sqlite3

and point chatlead at it (behind TLS in production: chatlead refuses plain http to
another host unless ``CHATLEAD_WEBHOOK_ALLOW_PRIVATE=true``)::

    CHATLEAD_WEBHOOK_URL=https://crm.example.com/hook CHATLEAD_WEBHOOK_SECRET=whsec_... \\
        chatlead serve

``chatlead test-event <site>`` sends a signed ``lead.test`` event to check the set-up;
it is acknowledged and logged, not saved as a lead. Needs starlette, uvicorn and
standardwebhooks (all installed with chatlead).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio.to_thread
import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_BODY = 4 * 1024 * 1024  # a lead with a 2,000-line transcript stays well under this

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,            -- the webhook-id header: one row per event, ever
    type TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leads (
    session_id TEXT PRIMARY KEY,    -- one lead per chat session
    status TEXT NOT NULL,           -- completed | abandoned
    name TEXT, email TEXT, phone TEXT, message TEXT,
    lead TEXT NOT NULL,             -- the whole ExternalLead, JSON
    updated_at REAL NOT NULL
);
"""


class TooLarge(Exception):
    pass


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refusing it once it passes ``limit`` bytes (chunked or not)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def record(db: Path, webhook_id: str, event: dict[str, Any]) -> bool:
    """Store the event once: False when this ``webhook-id`` was seen before.

    The id and the lead are written in one transaction, so a crash between the two
    cannot mark an event as seen without its lead (chatlead would not send it again).
    """
    conn = connect(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        fresh = conn.execute(
            "INSERT OR IGNORE INTO webhooks (id, type, received_at) VALUES (?, ?, ?)",
            (webhook_id, event["type"], time.time()),
        ).rowcount
        if fresh and event["type"] in ("lead.completed", "lead.abandoned"):
            save_lead(conn, event)
        conn.execute("COMMIT")
        return bool(fresh)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def save_lead(conn: sqlite3.Connection, event: dict[str, Any]) -> None:
    """Your CRM write goes here. chatlead delivers a session's events in order."""
    lead = event["data"]
    fields = {f["name"]: f["value"] for f in lead.get("fields", [])}
    status = "completed" if event["type"] == "lead.completed" else "abandoned"
    conn.execute(
        "INSERT INTO leads (session_id, status, name, email, phone, message, lead, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (session_id) DO UPDATE SET status = excluded.status,"
        " name = excluded.name, email = excluded.email, phone = excluded.phone,"
        " message = excluded.message, lead = excluded.lead, updated_at = excluded.updated_at",
        (
            lead["sessionId"],
            status,
            fields.get("name"),
            fields.get("email"),
            fields.get("phone"),
            fields.get("message"),
            json.dumps(lead),
            time.time(),
        ),
    )


def create_app(secret: str, db: Path, max_body: int = MAX_BODY) -> Starlette:
    webhook = Webhook(secret)
    conn = connect(db)
    conn.executescript(SCHEMA)
    conn.close()

    async def hook(request: Request) -> Response:
        try:
            body = await read_capped(request, max_body)
        except TooLarge:
            return JSONResponse({"error": "body too large"}, status_code=413)
        headers = {name: value for name, value in request.headers.items()}
        try:
            # verify() checks the signature over the exact bytes received and
            # refuses timestamps more than 5 minutes away (replayed captures)
            event = webhook.verify(body.decode(), headers)
        except WebhookVerificationError:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        except ValueError:  # not UTF-8 or not JSON (UnicodeDecodeError is a ValueError)
            return JSONResponse({"error": "not a lead event"}, status_code=400)
        webhook_id = headers["webhook-id"]
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            return JSONResponse({"error": "not a lead event"}, status_code=400)
        fresh = await anyio.to_thread.run_sync(record, db, webhook_id, event)
        lead = event["data"]
        print(
            f"{'stored' if fresh else 'duplicate'} {event.get('type')} id={webhook_id}"
            f" session={lead.get('sessionId')}",
            flush=True,
        )
        return JSONResponse({"ok": True, "duplicate": not fresh})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--db", type=Path, default=Path("leads.sqlite3"))
    parser.add_argument("--max-body", type=int, default=MAX_BODY, help="bytes")
    args = parser.parse_args(argv)
    secret = os.environ.get("RECEIVER_SECRET", "")
    if not secret.startswith("whsec_"):
        print("RECEIVER_SECRET must be set to the whsec_... signing secret", file=sys.stderr)
        return 2
    app = create_app(secret, args.db, args.max_body)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
