"""A site's consent notice (CONTRACT §12, Consent): ``[sites.X.consent]``, with no I/O.

The widget shows ``text`` (and, when ``marketing`` is set, an unticked checkbox with
that label) before the first question; the visitor answers with a ``consent`` frame.
What it stores is three lead fields: ``consent`` (the version agreed to),
``consent_at`` (Redis time, written by ``visitor.lua``) and ``marketing_consent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import FieldInvalid

__all__ = [
    "CONSENT",
    "CONSENT_AT",
    "MARKETING_CONSENT",
    "Consent",
    "consent_updates",
    "marketing_allowed",
    "needs_consent",
    "offer",
]

CONSENT = "consent"
CONSENT_AT = "consent_at"
MARKETING_CONSENT = "marketing_consent"


class Consent(BaseModel):
    """The notice a visitor agrees to, its ``version``, and the optional opt-in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: Annotated[str, Field(min_length=1, max_length=2000)]
    version: Annotated[str, Field(min_length=1, max_length=64)]
    required: bool = True
    marketing: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    """The checkbox's label; unset: no marketing opt-in is offered (and reminders,
    which need it, are not sent on this site)."""

    @field_validator("text", "version", "marketing")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None


def needs_consent(consent: Consent | None, fields: Mapping[str, str]) -> bool:
    """Whether this session must agree before it may answer anything."""
    return consent is not None and consent.required and not fields.get(CONSENT)


def offer(consent: Consent | None, fields: Mapping[str, str]) -> dict[str, Any] | None:
    """The welcome's ``consent`` object while the session has not agreed, else None."""
    if consent is None or fields.get(CONSENT):
        return None
    body: dict[str, Any] = {
        "text": consent.text,
        "version": consent.version,
        "required": consent.required,
    }
    if consent.marketing:
        body["marketing"] = consent.marketing
    return body


def consent_updates(consent: Consent | None, version: str, marketing: bool) -> dict[str, str]:
    """The fields a ``consent`` frame stores (``consent_at`` is the store's clock).

    Raises:
        FieldInvalid: the site asks no consent, or ``version`` is not the one shown.
    """
    if consent is None:
        raise FieldInvalid("This site asks no consent")
    if version != consent.version:
        raise FieldInvalid(f"The consent text changed (version {consent.version}); read it again")
    opted_in = marketing and consent.marketing is not None
    return {CONSENT: version, MARKETING_CONSENT: "true" if opted_in else "false"}


def marketing_allowed(consent: Consent | None, fields: Mapping[str, str]) -> bool:
    """Whether the visitor may get reminder emails: always on a site that asks no
    consent, else only with the marketing opt-in ticked."""
    return consent is None or fields.get(MARKETING_CONSENT) == "true"
