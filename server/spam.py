"""Spam defence (CONTRACT §12, Spam): ``[sites.X.spam]`` and its rules, with no I/O.

A session is flagged spam -- kept, counted and listed apart, never forwarded until an
operator releases it -- for one reason, the first that applies:

- ``honeypot``: the widget's hidden input was filled (``hello.hp``), at the start;
- ``disposable``: the email's domain (or a parent of it) is a known disposable one, from
  the ``disposable-email-domains`` package, when the answer is given;
- ``ip_rate``: the client network completed more than ``max_leads_per_ip`` leads on the
  site in the last hour, decided when this one completes;
- ``min_fill``: it completed less than ``min_fill`` after it started, on Redis' clock
  (``visitor.lua`` decides it there).

The visitor sees the same thank-you either way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .units import parse_duration

__all__ = [
    "DISPOSABLE",
    "HONEYPOT",
    "IP_RATE",
    "MIN_FILL",
    "REASONS",
    "Spam",
    "answer_reason",
    "hello_reason",
    "is_disposable",
]

HONEYPOT = "honeypot"
DISPOSABLE = "disposable"
IP_RATE = "ip_rate"
MIN_FILL = "min_fill"
REASONS = (HONEYPOT, DISPOSABLE, IP_RATE, MIN_FILL)
IP_WINDOW_MS = 3_600_000
"""The window of ``max_leads_per_ip``: one hour."""


class Spam(BaseModel):
    """``honeypot`` and ``disposable`` default on; ``min_fill`` and ``max_leads_per_ip``
    default off (offices share IPs, scripts and tests fill fast)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    honeypot: bool = True
    disposable: bool = True
    min_fill: float | None = None
    """Seconds; a lead completed sooner after its start is spam."""
    max_leads_per_ip: Annotated[int | None, Field(ge=1, le=100_000)] = None

    @field_validator("min_fill", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f'{value} has no unit; write e.g. "{value}s"')
        seconds = parse_duration(value)
        if not 0 < seconds <= 3600:
            raise ValueError("must be between 1ms and 1h")
        return seconds

    @property
    def min_fill_ms(self) -> int:
        """``min_fill`` in ms; 0 when off."""
        return round(self.min_fill * 1000) if self.min_fill else 0


@functools.cache
def _blocklist() -> frozenset[str]:
    from disposable_email_domains import blocklist  # ~200 KB of names: read on first use

    return frozenset(blocklist)


def is_disposable(email: str) -> bool:
    """Whether the address's domain, or any domain it is under, is a disposable one."""
    domain = email.rpartition("@")[2].strip().lower().rstrip(".")
    names = _blocklist()
    parts = domain.split(".")
    return any(".".join(parts[i:]) in names for i in range(len(parts) - 1))


def hello_reason(spam: Spam, honeypot: str | None) -> str | None:
    """``honeypot`` when the rule is on and the hidden input was filled."""
    return HONEYPOT if spam.honeypot and honeypot else None


def answer_reason(spam: Spam, updates: Mapping[str, str]) -> str | None:
    """``disposable`` when the rule is on and this answer stores such an email."""
    email = updates.get("email")
    return DISPOSABLE if spam.disposable and email and is_disposable(email) else None
