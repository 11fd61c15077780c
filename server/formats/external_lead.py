"""The default format: a Standard Webhooks envelope around the ExternalLead.

Body ``{"type", "timestamp", "data"}``, plus ``resume_url`` in ``lead.abandoned`` (§11);
headers ``webhook-id`` (the stable event id), ``webhook-timestamp`` and, with secrets,
``webhook-signature`` carrying one ``v1,<sig>`` per secret (two during a rotation),
space-separated.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from standardwebhooks.webhooks import Webhook as Signer

from . import Context, Format, LeadEvent, SendResult

__all__ = ["build_request", "send", "sign"]


def sign(secrets: tuple[str, ...], event_id: str, at: datetime, body: str) -> str:
    """``webhook-signature`` value: each secret's ``v1,<base64>``, space-separated."""
    return " ".join(Signer(secret).sign(event_id, at, body) for secret in secrets)


def build_request(event: LeadEvent, now: datetime) -> tuple[dict[str, str], str]:
    """Headers and body for one attempt; re-signed with a fresh timestamp each time."""
    now = now.astimezone(UTC).replace(microsecond=0)
    envelope = {
        "type": event.type,
        "timestamp": event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": event.lead,
    }
    if event.resume_url:
        envelope["resume_url"] = event.resume_url
    body = orjson.dumps(envelope).decode()
    headers = {
        "content-type": "application/json",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(now.timestamp())),
    }
    if event.destination.secrets:
        headers["webhook-signature"] = sign(event.destination.secrets, event.id, now, body)
    return headers, body


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    url = event.destination.url
    assert url is not None, "inbox events never reach a format"
    headers, body = build_request(event, datetime.now(UTC))
    response = await ctx.http.post(url, content=body.encode(), headers=headers)
    return SendResult.from_response(response)


FORMAT = Format("external-lead", send)
