"""Where a visitor came from: ``hello.attribution`` and ``hello.trigger`` (CONTRACT §13).

Pure parsing, no I/O. The widget sends the ad parameters of the landing page and the
first touch it keeps in the visitor's browser; here unknown keys are dropped, values
that are not strings are ignored, and every value is capped. Each kept key becomes a
lead field of the same name; the trigger that opened the chat becomes field ``trigger``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ATTRIBUTION_KEYS",
    "CLICK_IDS",
    "MAX_ATTRIBUTION_VALUE",
    "UTM_KEYS",
    "parse_attribution",
    "parse_trigger",
]

CLICK_IDS = ("gclid", "fbclid", "msclkid")
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
FIRST_TOUCH = ("first_landing_page", "first_referrer", "first_seen")
ATTRIBUTION_KEYS = (*UTM_KEYS, *CLICK_IDS, *FIRST_TOUCH)
MAX_ATTRIBUTION_VALUE = 500
_URL_KEYS = {"first_landing_page", "first_referrer"}
MAX_URL_VALUE = 2000
_TRIGGER = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")


def parse_attribution(raw: Any) -> tuple[tuple[str, str], ...]:
    """The known, non-empty string entries of ``raw`` (anything else gives nothing),
    in ``ATTRIBUTION_KEYS`` order, each cut to its cap."""
    if not isinstance(raw, dict):
        return ()
    kept: list[tuple[str, str]] = []
    for key in ATTRIBUTION_KEYS:
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            cap = MAX_URL_VALUE if key in _URL_KEYS else MAX_ATTRIBUTION_VALUE
            kept.append((key, value.strip()[:cap]))
    return tuple(kept)


def parse_trigger(raw: Any) -> str | None:
    """A trigger name (``api``, ``resume``, ``after``, a site trigger's id…), else None."""
    return raw if isinstance(raw, str) and _TRIGGER.match(raw) else None
