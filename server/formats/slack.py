"""Format ``slack``: an alert to a Slack incoming webhook (CONTRACT §9).

The destination's ``url`` is the webhook (``https://hooks.slack.com/services/…``); it
is a secret, so it never appears in a delivery's error. One ``POST`` per event, body
``{"text": <fallback>, "blocks": [...]}`` in Block Kit:

* a ``header`` (``plain_text``, at most :data:`HEADER_LIMIT` characters):
  ``New lead: …`` / ``Abandoned chat: …`` / ``Visitor waiting: …``;
* the captured fields as ``mrkdwn`` section fields, at most :data:`FIELDS_PER_SECTION`
  per section and :data:`FIELD_LIMIT` characters each;
* the transcript in one section (at most :data:`SECTION_LIMIT` characters);
* a ``context`` line (site, company, session) and a button to the session in the admin.

Every visitor value is escaped for ``mrkdwn`` (:func:`slack_escape`: ``&``, ``<``, ``>``
only, as Slack's formatting reference asks), so ``<!channel>`` or ``<https://x|click>``
typed in the chat shows as text instead of pinging a channel or hiding a link. A value
too long for its block is cut with :data:`CUT_MARKER`; the full text stays in ``text``,
which Slack shows in notifications and to clients without Block Kit. A message never
has more than :data:`BLOCK_LIMIT` blocks.

Slack answers ``200`` with the body ``ok``. Any ``200`` counts as delivered (Slack
documents no ``200`` that is a failure); its body is kept in the delivery log. Other
answers follow the delivery rules: ``400 invalid_blocks``/``invalid_payload``,
``403 action_prohibited``, ``404 no_service``, ``410 channel_is_archived`` are dead
letters, ``429`` and ``5xx`` are retried.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import httpx

from . import Context, Format, LeadEvent, SendResult
from .email_alert import alert_title, field_label
from .transcript_text import lead_fields, readable_transcript

__all__ = [
    "BLOCK_LIMIT",
    "BUTTON_TEXT",
    "CUT_MARKER",
    "FIELDS_PER_SECTION",
    "FIELD_LIMIT",
    "HEADER_LIMIT",
    "SECTION_LIMIT",
    "build_payload",
    "cut",
    "result_of",
    "send",
    "slack_escape",
]

HEADER_LIMIT = 150
"""Longest ``plain_text`` of a header block."""
SECTION_LIMIT = 3000
"""Longest text of a section block."""
FIELD_LIMIT = 2000
"""Longest text of one section field."""
FIELDS_PER_SECTION = 10
BLOCK_LIMIT = 50
"""Most blocks in one message."""
BUTTON_TEXT = "Open in chatlead"
RESUME_TEXT = "Visitor's resume link"
BUTTON_URL_LIMIT = 3000
CUT_MARKER = "… (cut)"
_FIXED_BLOCKS = 4  # header, transcript, context, actions
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def slack_escape(text: str) -> str:
    """``text`` safe inside ``mrkdwn``: ``&``, ``<`` and ``>`` as HTML entities, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ending with :data:`CUT_MARKER` when cut.

    An escaped text is never cut inside an entity (``&am``).
    """
    if len(text) <= limit:
        return text
    head = _PARTIAL_ENTITY.sub("", text[: max(0, limit - len(CUT_MARKER))])
    return (head + CUT_MARKER)[:limit]


def _field(label: str, value: str) -> dict[str, str]:
    text = f"*{slack_escape(label)}*\n{slack_escape(value)}"
    return {"type": "mrkdwn", "text": cut(text, FIELD_LIMIT)}


def _field_sections(fields: dict[str, str]) -> list[dict[str, Any]]:
    items = [_field(field_label(name), value) for name, value in fields.items()]
    if not items:
        return [{"type": "section", "text": {"type": "mrkdwn", "text": "_No details captured._"}}]
    room = (BLOCK_LIMIT - _FIXED_BLOCKS) * FIELDS_PER_SECTION
    if len(items) > room:
        hidden = len(items) - room + 1
        items = [*items[: room - 1], _field("More", f"{hidden} more fields {CUT_MARKER}")]
    return [
        {"type": "section", "fields": items[start : start + FIELDS_PER_SECTION]}
        for start in range(0, len(items), FIELDS_PER_SECTION)
    ]


def _transcript_section(lead: dict[str, Any]) -> dict[str, Any] | None:
    transcript = readable_transcript(lead)
    if not transcript:
        return None
    head, tail = "*Conversation*\n```", "```"
    body = cut(slack_escape(transcript), SECTION_LIMIT - len(head) - len(tail))
    return {"type": "section", "text": {"type": "mrkdwn", "text": head + body + tail}}


def _context(event: LeadEvent) -> dict[str, Any]:
    session = str(event.lead.get("sessionId") or "")
    company = event.site.company or str(event.lead.get("company") or "")
    parts = [f"Site *{event.site.id}*"]
    if company:
        parts.append(company)
    if session:
        parts.append(f"session {session[:12]}")
    parts.append(event.created_at.strftime("%Y-%m-%d %H:%M UTC"))
    text = cut(slack_escape(" · ".join(parts)), SECTION_LIMIT)
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _fallback(
    title: str, fields: dict[str, str], transcript: str, link: str, resume: str | None
) -> str:
    lines = [title, ""]
    lines += [f"{field_label(name)}: {value}" for name, value in fields.items()]
    if transcript:
        lines += ["", "Conversation:", transcript]
    lines += ["", f"{BUTTON_TEXT}: {link}"]
    if resume:
        lines.append(f"{RESUME_TEXT}: {resume}")
    return slack_escape("\n".join(lines))


def build_payload(event: LeadEvent, link: str) -> dict[str, Any]:
    """The webhook body for ``event``; ``link`` is the session's page in the admin."""
    title = alert_title(event)
    fields = lead_fields(event.lead)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title, HEADER_LIMIT)}}
    ]
    blocks += _field_sections(fields)
    transcript = _transcript_section(event.lead)
    if transcript is not None:
        blocks.append(transcript)
    blocks.append(_context(event))
    buttons: list[dict[str, Any]] = []
    if len(link) <= BUTTON_URL_LIMIT:
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": BUTTON_TEXT},
                "url": link,
                "style": "primary",
                "action_id": "open_session",
            }
        )
    resume = event.resume_url
    if resume and len(resume) <= BUTTON_URL_LIMIT:  # an abandoned lead's way back (§11)
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": RESUME_TEXT},
                "url": resume,
                "action_id": "resume_link",
            }
        )
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    text = _fallback(title, fields, readable_transcript(event.lead), link, resume)
    return {"text": text, "blocks": blocks[:BLOCK_LIMIT]}


def result_of(response: httpx.Response) -> SendResult:
    """Classify Slack's answer; a refusal's error names Slack's reason (``invalid_blocks``)."""
    result = SendResult.from_response(response)
    reason = response.text.strip()[:100]
    if result.ok or not reason:
        return result
    return replace(result, error=f"HTTP {response.status_code}: {reason}")


# --- I/O ------------------------------------------------------------------------


async def send(ctx: Context, event: LeadEvent) -> SendResult:
    """Post the alert to the destination's webhook.

    A transport error is a retryable result whose message never holds the webhook URL.
    """
    url = event.destination.url or ""
    link = ctx.admin_link(str(event.lead.get("sessionId") or ""))
    try:
        response = await ctx.http.post(url, json=build_payload(event, link))
    except httpx.TimeoutException:
        return SendResult(ok=False, retryable=True, error="timeout")
    except httpx.TransportError as exc:
        failed = SendResult(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
        return failed.redacted(url)
    return result_of(response).redacted(url)


FORMAT = Format("slack", send, requires=("url",))
