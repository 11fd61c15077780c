"""Format ``reminder``: the visitor's reminder email after an abandonment (CONTRACT §11).

Built in: a site with ``[sites.X.recovery]`` has the destination ``reminder`` (event id
suffix ``:reminder``); ``sweep.lua`` writes one ``visitor.reminder`` event per step, due
at the abandonment plus the step's delay. At send time :func:`skip_reason` may decide
nothing is sent (the session came back, completed, was erased, has no email, or the
address is suppressed): the event is then settled with nothing sent. Otherwise one
message to the visitor's address through ``CHATLEAD_SMTP_URL`` (the rules of
:mod:`.email_alert`): text and HTML parts (values escaped), the bot's last question, the
resume link, ``List-Unsubscribe`` with one-click ``List-Unsubscribe-Post`` (RFC 8058),
and a ``Message-ID`` made from the event id, so a resend after a crash is the same
message. An address the SMTP server refuses for good (``5xx``) is suppressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from .. import keys
from ..consent import marketing_allowed
from ..errors import DeliveryError
from ..recovery import DEFAULT_SUBJECT
from ..unsubscribe import Unsubscribe, address_hash
from . import Context, Format, LeadEvent, SendResult
from . import transcript_text as tt
from .email_alert import (
    _esc,
    _session,
    _spec,
    check_address,
    one_line,
    parse_smtp_url,
    pick_address,
    reply_result,
)
from .guard import Resolver, system_resolve

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..session import SessionRecord

__all__ = ["build_reminder", "last_question", "send", "skip_reason"]

SESSION_TIMEOUT_S = 15.0
MISSING_SETTINGS = "reminders need CHATLEAD_SMTP_URL and a sender (recovery.from or SMTP_FROM)"


def step_of(event_id: str) -> tuple[int, int]:
    """The abandonment's number and the reminder step of a reminder event id."""
    base = event_id.removesuffix(keys.REMINDER_SUFFIX)
    number, step = base.rsplit("_", 2)[1:]
    return int(number), int(step)


async def skip_reason(
    redis: Redis, shard: int, event_id: str, record: SessionRecord | None, site: Any
) -> str | None:
    """Why this reminder is not sent now, or None to send it."""
    if record is None:
        return "the session is gone (expired or erased)"
    if record.status.value == "completed":
        return "the session completed"
    number, _ = step_of(event_id)
    abandons = await redis.hget(keys.session(shard, record.id), "abandons")
    if record.status.value != "abandoned" or int(abandons or 0) != number:
        return "the visitor came back"
    email = record.fields.get("email") or ""
    if not email:
        return "no email address"
    if not marketing_allowed(site.consent, record.fields):
        return "no marketing consent"
    if await Unsubscribe(redis).is_suppressed(site.id, email):
        return "the address is suppressed (unsubscribed, or refused by SMTP)"
    return None


def last_question(lead: Mapping[str, Any]) -> str | None:
    """The bot's last message in the transcript, the question the visitor left at."""
    for entry in reversed(list(lead.get("transcript") or ())):
        sender = entry.get("from") if isinstance(entry, Mapping) else None
        if isinstance(sender, Mapping) and sender.get("id") == tt.BOT_ID:
            text = str(entry.get("message") or "").strip()
            if text:
                return text
    return None


def _company(event: LeadEvent) -> str:
    return event.site.company or str(event.lead.get("company") or "") or event.site.id


def _link(event: LeadEvent) -> str | None:
    """The resume link, marked with this reminder's step (a return through it is
    credited to ``reminder:<step>``)."""
    if not event.resume_url:
        return None
    return f"{event.resume_url}?s={step_of(event.id)[1]}"


def _text(event: LeadEvent, unsubscribe: str) -> str:
    lines = [f"You started a conversation with {_company(event)} but did not finish it.", ""]
    question = last_question(event.lead)
    if question:
        lines += ["We last asked:", "  " + question.replace("\n", "\n  "), ""]
    link = _link(event)
    if link:
        lines += [f"Pick up where you left off: {link}", ""]
    lines += ["-- ", f"No more reminders: {unsubscribe}"]
    return "\n".join(lines) + "\n"


def _html(event: LeadEvent, unsubscribe: str) -> str:
    parts = [
        '<!doctype html><html><body style="font:16px/1.5 system-ui,sans-serif;color:#14212b">',
        f"<p>You started a conversation with {_esc(_company(event))} but did not finish it.</p>",
    ]
    question = last_question(event.lead)
    if question:
        parts.append(f'<p>We last asked:</p><blockquote style="color:#374151">{_esc(question)}'
                     "</blockquote>")  # fmt: skip
    resume = _link(event)
    if resume:
        href = html.escape(resume, quote=True)
        parts.append(
            f'<p><a href="{href}" style="display:inline-block;padding:10px 18px;'
            'background:#2563eb;color:#fff;border-radius:6px;text-decoration:none">'
            "Continue the conversation</a></p>"
        )
    link = html.escape(unsubscribe, quote=True)
    parts.append(f'<p style="font-size:13px;color:#6b7280"><a href="{link}">No more '
                 "reminders</a></p></body></html>")  # fmt: skip
    return "".join(parts)


def message_id(event_id: str, sender: str) -> str:
    """The same for every attempt of one reminder step, distinct between steps."""
    seed = hashlib.sha256(f"reminder\x00{event_id}".encode()).hexdigest()
    return f"<{seed[:32]}@{_spec(sender).rpartition('@')[2] or 'chatlead'}>"


def build_reminder(event: LeadEvent, sender: str, to: str, unsubscribe: str) -> EmailMessage:
    """The reminder from ``sender`` to the visitor's address ``to``."""
    recovery = event.site.recovery
    message = EmailMessage(policy=SMTP)
    message["Subject"] = recovery.subject if recovery else DEFAULT_SUBJECT
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(event.created_at)
    message["Message-ID"] = message_id(event.id, sender)
    message["Auto-Submitted"] = "auto-generated"
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(_text(event, unsubscribe))
    message.add_alternative(_html(event, unsubscribe), subtype="html")
    return message


async def send(ctx: Context, event: LeadEvent, resolve: Resolver = system_resolve) -> SendResult:
    """Send one reminder; a ``5xx`` refusal suppresses the address on the site."""
    recovery = event.site.recovery
    sender_text = (recovery.sender if recovery else None) or ctx.smtp_from
    if not ctx.smtp_url or not sender_text or ctx.redis is None:
        raise DeliveryError(MISSING_SETTINGS)
    server = parse_smtp_url(ctx.smtp_url)
    try:
        sender = check_address(sender_text)
        to = _spec(check_address(tt.lead_field(event.lead, "email") or ""))
    except ValueError as exc:
        raise DeliveryError(one_line(str(exc))) from None
    unsubscribe = Unsubscribe(ctx.redis)
    link = await unsubscribe.url(ctx.public_url, event.site.id, to)
    message = build_reminder(event, sender, to, link)
    try:
        addresses = await resolve(server.host, server.port)
        ip = pick_address(server.host, addresses, event.destination.allow_private)
        attempt = _session(server, ip, message, _spec(sender))
        reply = await asyncio.wait_for(attempt, SESSION_TIMEOUT_S)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = min(exc.recipients, key=lambda failure: failure.code, default=None)
        result = reply_result(first.code, first.message) if first else reply_result(550, "")
    except aiosmtplib.SMTPResponseException as exc:
        result = reply_result(exc.code, exc.message)
    except (OSError, httpx.ConnectError) as exc:
        result = SendResult(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
    except aiosmtplib.SMTPException as exc:
        result = SendResult(ok=False, retryable=False, error=f"{type(exc).__name__}: {exc}")
    else:
        result = SendResult(ok=True, retryable=False, response_snippet=reply[:300])
    if not result.ok and not result.retryable and (result.error or "").startswith("SMTP 5"):
        with contextlib.suppress(Exception):  # refused for good: no further steps to it
            await unsubscribe.suppress(event.site.id, address_hash(to))
    return result.redacted(server.password, urlsplit(ctx.smtp_url).password)


FORMAT = Format("reminder", send)
