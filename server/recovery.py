"""A site's reminder emails (CONTRACT §11, Reminders): ``[sites.X.recovery]``.

``reminders`` are delays after the abandonment (at most :data:`MAX_REMINDERS`), each
one ``visitor.reminder`` event written by the sweep that flags the session abandoned,
due at the abandonment time plus its delay (:mod:`chatlead.formats.reminder` sends it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .units import parse_duration

if TYPE_CHECKING:
    from .sites import Site

__all__ = ["MAX_REMINDERS", "REMINDER", "REMINDER_EVENT_TYPE", "Recovery", "reminder_plans"]

MAX_REMINDERS = 3
REMINDER = "reminder"
"""The built-in destination of reminder events (their event id suffix ``:reminder``)."""
REMINDER_EVENT_TYPE = "visitor.reminder"
DEFAULT_SUBJECT = "Finish your conversation with us"


class Recovery(BaseModel):
    """``reminders`` (seconds after the abandonment), ``from`` and ``subject``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    reminders: Annotated[tuple[float, ...], Field(max_length=MAX_REMINDERS)] = ()
    sender: Annotated[str | None, Field(alias="from")] = None
    subject: str = DEFAULT_SUBJECT
    allow_private: bool = False
    """Whether ``CHATLEAD_SMTP_URL`` may be a private address (default: the site's
    ``WEBHOOK_ALLOW_PRIVATE``)."""

    @field_validator("reminders", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        if len(value) > MAX_REMINDERS:
            raise ValueError(f"at most {MAX_REMINDERS} reminders, not {len(value)}")
        seconds = []
        for item in value:
            if isinstance(item, int | float) and not isinstance(item, bool):
                raise ValueError(f'{item} has no unit; write e.g. "{item}h"')
            parsed = parse_duration(item)
            if parsed < 1:
                raise ValueError(f"a reminder comes at least 1s after the abandonment: {item!r}")
            seconds.append(parsed)
        return tuple(seconds)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from .formats.email_alert import check_address

        return check_address(value)

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        from .formats.email_alert import one_line

        subject = one_line(value)
        if not subject:
            raise ValueError("must not be empty")
        return subject


def reminder_plans(sites: Mapping[str, Site]) -> dict[str, dict[str, Any]]:
    """Per site with reminders, what ``sweep.lua`` schedules: ``after`` (the delays in
    ms) and ``marketing`` (whether the visitor must have ticked the site's marketing
    opt-in, §12: on every site that asks consent)."""
    return {
        site.id: {
            "after": [round(delay * 1000) for delay in site.recovery.reminders],
            "marketing": site.consent is not None,
        }
        for site in sites.values()
        if site.recovery is not None and site.recovery.reminders
    }
