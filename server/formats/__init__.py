"""CRM formats: turn a lead event into the HTTP request(s) a target expects.

Each format module keeps its decisions in pure functions (event -> request,
response -> result) and exposes one ``send(http, event)`` coroutine that runs
them over an ``httpx.AsyncClient``. :func:`send` picks the site's format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from server.config import Site

__all__ = ["LeadEvent", "SendResult", "send"]


@dataclass(frozen=True)
class LeadEvent:
    """One event to deliver: ``lead`` is the ExternalLead (camelCase JSON object)."""

    id: str
    type: str  # "lead.completed" | "lead.abandoned" | "lead.test"
    created_at: datetime  # aware, UTC
    site: Site
    lead: dict[str, Any]


@dataclass(frozen=True)
class SendResult:
    """Outcome of one delivery attempt, as recorded in the delivery log."""

    ok: bool
    retryable: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    ref_id: str | None = None
    response_snippet: str = ""

    @classmethod
    def from_response(cls, response: httpx.Response, ref_id: str | None = None) -> SendResult:
        """Classify an HTTP answer by the delivery rules (CONTRACT §5)."""
        code = response.status_code
        ok = 200 <= code < 300
        retryable = code in (408, 429) or code >= 500
        return cls(
            ok=ok,
            retryable=retryable,
            status_code=code,
            error=None if ok else f"HTTP {code}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            ref_id=ref_id,
            response_snippet=response.text[:300],
        )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


Sender = Callable[[httpx.AsyncClient, LeadEvent], Awaitable[SendResult]]


def _senders() -> dict[str, Sender]:
    from server.formats import external_lead

    return {"external-lead": external_lead.send}


async def send(http: httpx.AsyncClient, event: LeadEvent) -> SendResult:
    """Deliver ``event`` to its site's webhook in the site's format."""
    return await _senders()[event.site.webhook.format](http, event)
