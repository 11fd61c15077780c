"""Format ``email``: an alert to the business by SMTP (CONTRACT §9).

One message per event to ``to``, from ``CHATLEAD_SMTP_FROM``, through ``CHATLEAD_SMTP_URL``
(``smtps://user:pass@host:465``, or ``smtp://…:587`` upgraded with STARTTLS, which may be
skipped only on loopback). The host follows the webhook rule (:mod:`.guard`): resolved
once, every address public unless ``allow_private``, connected to the checked address,
TLS verifying the name. Plain-text and HTML parts (visitor values escaped), a subject
without control characters, a ``Message-ID`` from the event id (a retry sends the same
message). SMTP ``4xx`` and lost connections are retried, ``5xx`` is a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import html
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from importlib import resources
from string import Template
from typing import Annotated, Any, NamedTuple
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ..errors import DeliveryError
from ..sites import is_loopback
from . import Context, Format, LeadEvent, SendResult
from . import transcript_text as tt
from .guard import Resolver, is_public_address, system_resolve

__all__ = ["Options", "alert_title", "build_message", "field_label", "parse_smtp_url", "send"]

TIMEOUT_S = 10.0  # seconds for connecting, and for each SMTP command
SESSION_TIMEOUT_S = 15.0  # for a whole attempt: well within the outbox's lease (20 s)
MISSING_SETTINGS = "email destination needs CHATLEAD_SMTP_URL and CHATLEAD_SMTP_FROM"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


class _Kind(NamedTuple):
    title: str  # of the subject; the rest is the HTML part's
    badge: str
    accent: str
    badge_bg: str
    intro: str


_KINDS = {
    "lead.completed": _Kind("New lead", "New lead", "#2563eb", "#eff6ff",
        "A visitor finished the chat on {company} and left these details."),
    "lead.abandoned": _Kind("Abandoned chat", "Abandoned chat", "#b45309", "#fffbeb",
        "A visitor left the chat on {company} before finishing. This is what they shared."),
    "visitor.waiting": _Kind("Visitor waiting", "Visitor waiting", "#dc2626", "#fef2f2",
        "A visitor on {company} is waiting for a person to answer in the chat."),
    "lead.test": _Kind("[Test] New lead", "Test alert", "#4b5563", "#f3f4f6",
        "This is a test alert for {company}: the details below are not a real visitor's."),
}  # fmt: skip


def one_line(text: str) -> str:
    """``text`` without control characters or line breaks, spaces collapsed."""
    return " ".join(_CONTROL.sub(" ", text).split())


def field_label(name: str) -> str:
    """``phone_number`` / ``phoneNumber`` -> ``Phone number``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    return " ".join(spaced.split()).capitalize() or name


def _company(event: LeadEvent) -> str:
    return event.site.company or str(event.lead.get("company") or "") or event.site.id


def _who(lead: Mapping[str, Any]) -> str:
    who = one_line(tt.lead_field(lead, "name") or tt.lead_field(lead, "email") or "")
    return (who if len(who) <= 100 else who[:99] + "…") or "Website visitor"


def alert_title(event: LeadEvent) -> str:
    """``New lead: <name or email> (<company>)`` and the like, on one line."""
    kind = _KINDS.get(event.type, _KINDS["lead.completed"])
    return one_line(f"{kind.title}: {_who(event.lead)} ({_company(event)})")


def check_address(value: str) -> str:
    """``value`` stripped if it is one address (``a@b``, ``Name <a@b>``), else ValueError."""
    value, fine = value.strip(), False
    spec = parseaddr(value)[1]
    if not _CONTROL.search(value) and spec.count("@") == 1:
        with contextlib.suppress(ValueError, IndexError, HeaderParseError):
            parsed = Address(addr_spec=spec)
            fine = bool(parsed.username and parsed.domain) and " " not in parsed.domain
    if not fine:
        raise ValueError(f"{value!r} is not an email address")
    return value


class Options(BaseModel):
    """An ``email`` destination's own keys: ``to``, one address or more."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: Annotated[
        tuple[Annotated[str, AfterValidator(check_address)], ...],
        BeforeValidator(lambda v: tuple(v.split(",")) if isinstance(v, str) else v),  # "a, b"
        Field(min_length=1),
    ]


def _spec(address: str) -> str:
    return parseaddr(address)[1]


# --- the message (pure) -------------------------------------------------------------


@functools.cache
def _template(name: str) -> Template:
    return Template((resources.files(__package__) / "templates" / name).read_text("utf-8"))


def _esc(text: str) -> str:
    return html.escape(text, quote=True).replace("\n", "<br>")


def _value_html(value: str, email: str | None) -> str:
    if value != email:
        return _esc(value)
    href = html.escape(f"mailto:{_spec(value)}", quote=True)
    return f'<a href="{href}" style="color:#2563eb;text-decoration:none;">{_esc(value)}</a>'


def _moment(created: Any) -> str:
    try:
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return ""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).strftime("%d %b, %H:%M UTC")


def _bubble(entry: Mapping[str, Any], user_id: Any) -> tuple[str, str, str]:
    sender = entry.get("from")
    sender_id = sender.get("id") if isinstance(sender, Mapping) else None
    if sender_id == tt.BOT_ID:
        return "Bot", "left", "#f3f4f6"
    if sender_id is None or sender_id == user_id:
        return "Visitor", "right", "#dbeafe"
    name = sender.get("name") if isinstance(sender, Mapping) else None
    return str(name or sender_id), "left", "#dcfce7"  # an agent (CONTRACT §10)


def _messages_html(lead: Mapping[str, Any]) -> str:
    rows, used = [], 0
    for entry in [entry for entry in lead.get("transcript") or () if isinstance(entry, Mapping)]:
        text = str(entry.get("message") or "").strip()
        used += len(text)
        speaker, align, bubble = _bubble(entry, lead.get("userId"))
        rows.append(_template("lead_email_message.html").substitute(
            speaker=_esc(speaker), align=align, bubble=bubble,
            time=_moment(entry.get("createdTime")),
            text=_esc(text if used <= tt.TRANSCRIPT_LIMIT else tt.TRUNCATED_MARKER),
        ))  # fmt: skip
        if used > tt.TRANSCRIPT_LIMIT:
            break
    return "".join(rows)


def _footer(event: LeadEvent) -> str:
    when = event.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Sent by chatlead for site {event.site.id} · {when} · event {event.id}"


def html_body(event: LeadEvent, link: str) -> str:
    """The HTML part: a card with the fields, a button to the admin and the conversation."""
    kind = _KINDS.get(event.type, _KINDS["lead.completed"])
    fields, email = tt.lead_fields(event.lead), tt.lead_field(event.lead, "email")
    row = _template("lead_email_field.html")
    rows = "".join(
        row.substitute(label=_esc(field_label(name)), value=_value_html(value, email))
        for name, value in fields.items()
    ) or row.substitute(label="Details", value="None captured")
    messages = _messages_html(event.lead) or row.substitute(label="", value="No messages")
    return _template("lead_email.html").substitute(
        kind._asdict(),  # our own colours and words; every other value is escaped
        title=_esc(alert_title(event)), heading=_esc(_who(event.lead)),
        intro=_esc(kind.intro.format(company=_company(event))),
        preheader=_esc(one_line(" · ".join(list(fields.values())[:3]))[:140]),
        link=html.escape(link, quote=True), rows=rows, messages=messages,
        footer=_esc(_footer(event)), resume=_resume_html(event.resume_url),
    )  # fmt: skip


RESUME_TEXT = "The visitor's link back into the chat"


def _resume_html(url: str | None) -> str:
    """An abandoned lead's resume link under the footer's address (§11), or nothing."""
    if not url:
        return ""
    href = html.escape(url, quote=True)
    style = "color:#6b7280;word-break:break-all;"
    return f'<br>{_esc(RESUME_TEXT)}: <a href="{href}" style="{style}">{href}</a>'


def text_body(event: LeadEvent, link: str) -> str:
    """The plain-text part: the same content, no markup."""
    kind = _KINDS.get(event.type, _KINDS["lead.completed"])
    lines = [alert_title(event), "", kind.intro.format(company=_company(event)), ""]
    for name, value in tt.lead_fields(event.lead).items():
        lines.append(f"{field_label(name)}: " + value.replace("\n", "\n    "))
    transcript = tt.readable_transcript(event.lead)
    if transcript:
        lines += ["", "Conversation", "------------", transcript]
    lines += ["", f"Open the conversation: {link}"]
    if event.resume_url:
        lines.append(f"{RESUME_TEXT}: {event.resume_url}")
    lines += ["", "-- ", _footer(event)]
    return "\n".join(lines) + "\n"


def build_message(event: LeadEvent, sender: str, link: str) -> EmailMessage:
    """The alert from ``sender``; the same ``Message-ID`` for every attempt."""
    seed = hashlib.sha256(f"{event.id}\x00{event.destination.name}".encode()).hexdigest()
    message = EmailMessage(policy=SMTP)
    message["Subject"] = alert_title(event)
    message["From"] = sender
    message["To"] = ", ".join(event.options.to)
    message["Date"] = format_datetime(event.created_at.astimezone(UTC))
    message["Message-ID"] = f"<{seed[:32]}@{_spec(sender).rpartition('@')[2] or 'chatlead'}>"
    message["Auto-Submitted"] = "auto-generated"
    visitor = tt.lead_field(event.lead, "email")
    if visitor:
        with contextlib.suppress(ValueError):  # a reply goes to the visitor
            message["Reply-To"] = _spec(check_address(visitor))
    message.set_content(text_body(event, link))
    message.add_alternative(html_body(event, link), subtype="html")
    return message


# --- the server ---------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpServer:
    """``CHATLEAD_SMTP_URL`` taken apart; ``implicit_tls`` for ``smtps://``."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpServer:
    """Raises: DeliveryError: not ``smtp(s)://`` with a host (the password is never quoted)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("smtp", "smtps") or not host:
        raise DeliveryError(f"CHATLEAD_SMTP_URL must be smtp(s)://host (scheme {scheme!r})")
    try:
        port = parts.port
    except ValueError:
        raise DeliveryError(f"CHATLEAD_SMTP_URL has a bad port (host {host})") from None
    implicit = scheme == "smtps"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return SmtpServer(host, port or (465 if implicit else 587), implicit, username, password)


def pick_address(host: str, addresses: list[str], allow_private: bool) -> str:
    """The address to connect to; DeliveryError if one is not public (``allow_private``)."""
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}: no addresses")
    blocked = sorted({ip for ip in addresses if not is_public_address(ip)})
    if blocked and not allow_private:
        raise DeliveryError(
            f"SMTP host {host} resolves to a non-public address ({', '.join(blocked)}); "
            "set allow_private on the destination to send through it"
        )
    return addresses[0].split("%", 1)[0]


def plain_allowed(ip: str) -> bool:
    """Whether mail may go to ``ip`` without TLS: only to a loopback address."""
    return is_loopback(ip) and ip != "localhost"  # an address, never a name


def reply_result(code: int, text: str) -> SendResult:
    """An SMTP refusal: ``5xx`` is a dead letter, anything else is retried."""
    dead = 500 <= code < 600
    return SendResult(ok=False, retryable=not dead, error=f"SMTP {code}: {one_line(text)[:200]}")


_tls = functools.cache(ssl.create_default_context)  # loading the CAs takes tens of ms


async def _session(server: SmtpServer, ip: str, message: EmailMessage, sender: str) -> str:
    """Hand ``message`` over; the answer to ``DATA``, with any recipient refused."""
    smtp = aiosmtplib.SMTP(
        hostname=server.host,  # TLS verifies, and sends SNI for, the name
        # connected to the checked address (asyncio makes the socket non-blocking)
        sock=await asyncio.to_thread(socket.create_connection, (ip, server.port), TIMEOUT_S),
        use_tls=server.implicit_tls,
        # STARTTLS is required (no offer: SMTPException, a dead letter) but to loopback
        start_tls=False if server.implicit_tls else None if plain_allowed(ip) else True,
        username=server.username,
        password=server.password,
        timeout=TIMEOUT_S,
        tls_context=_tls(),
        local_hostname=sender.rpartition("@")[2] or None,
    )
    try:
        await smtp.connect()  # and STARTTLS, and AUTH when the URL has a user
        refused, reply = await smtp.send_message(message)  # envelope from From and To
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await smtp.quit()  # the message was accepted: a failed goodbye changes nothing
    finally:
        smtp.close()
    parts = [f"{address} {failure.code}" for address, failure in refused.items()]
    return one_line(reply + (f"; refused {', '.join(parts)}" if parts else ""))


async def send(ctx: Context, event: LeadEvent, resolve: Resolver = system_resolve) -> SendResult:
    """Send the alert; a refused address or a missing setting raises :class:`DeliveryError`."""
    if not ctx.smtp_url or not ctx.smtp_from:
        raise DeliveryError(MISSING_SETTINGS)
    server = parse_smtp_url(ctx.smtp_url)
    try:
        sender = check_address(ctx.smtp_from)
    except ValueError as exc:
        raise DeliveryError(f"CHATLEAD_SMTP_FROM: {exc}") from None
    message = build_message(event, sender, ctx.admin_link(str(event.lead.get("sessionId") or "")))
    try:
        addresses = await resolve(server.host, server.port)
        ip = pick_address(server.host, addresses, event.destination.allow_private)
        attempt = _session(server, ip, message, _spec(sender))
        reply = await asyncio.wait_for(attempt, SESSION_TIMEOUT_S)
    except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient: retried if one was 4xx
        first = min(exc.recipients, key=lambda failure: failure.code, default=None)
        result = reply_result(first.code, first.message) if first else reply_result(550, "")
    except aiosmtplib.SMTPResponseException as exc:
        result = reply_result(exc.code, exc.message)
    except (OSError, httpx.ConnectError) as exc:  # refused, reset, timed out, no DNS answer
        result = SendResult(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
    except aiosmtplib.SMTPException as exc:  # no STARTTLS or no AUTH offered: configuration
        result = SendResult(ok=False, retryable=False, error=f"{type(exc).__name__}: {exc}")
    else:
        result = SendResult(ok=True, retryable=False, response_snippet=reply[:300])
    return result.redacted(server.password, urlsplit(ctx.smtp_url).password)


FORMAT = Format("email", send, Options)
