"""The scripted conversation (docs/PROTOCOL.md, A conversation), as pure functions.

Given a site's flow, the fields captured so far and one visitor event, decide
the field updates, the bot's replies and whether the session completes. A field
present with an empty value means "skipped" (optional steps only); the lead
leaves skipped fields out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from .errors import FieldInvalid
from .sites import FieldKind, FlowStep, Site

__all__ = [
    "DONE",
    "Outcome",
    "applies",
    "asked_steps",
    "derived_fields",
    "extract_contacts",
    "job_type_of",
    "next_step",
    "on_field",
    "on_message",
    "on_submit",
    "opening",
    "resuming",
    "prompt_of",
    "validate",
]

DONE = "done"
_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# Free-text fields that are not in the site's flow but that the lead understands.
_EXTRA_KINDS = {
    "name": FieldKind.NAME,
    "email": FieldKind.EMAIL,
    "phone": FieldKind.PHONE,
    "company": FieldKind.COMPANY,
    "message": FieldKind.TEXT,
}
_MIN_PHONE_DIGITS = 5
_SLOT_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_LIMITS = {FieldKind.NAME: 100, FieldKind.COMPANY: 200, FieldKind.TEXT: 1000}


@dataclass(frozen=True)
class Outcome:
    """What one visitor event changes.

    ``updates`` are field values to store, ``replies`` the bot's messages as
    ``{"text", "prompt"?}``, ``step`` the flow position afterwards.
    """

    updates: dict[str, str] = field(default_factory=dict)
    replies: tuple[dict[str, Any], ...] = ()
    step: str = DONE
    completes: bool = False


def prompt_of(step: FlowStep) -> dict[str, Any]:
    """The ``prompt`` object the widget renders for ``step``."""
    prompt: dict[str, Any] = {"field": step.field, "kind": step.kind.value}
    if step.options:
        prompt["options"] = [{"label": o.label, "value": o.value} for o in step.options]
    if not step.required:
        prompt["optional"] = True
    return prompt


def applies(step: FlowStep, fields: Mapping[str, str]) -> bool:
    """Whether ``step`` is asked, given the answers so far (its ``when``, CONTRACT §12)."""
    test = step.asked_when
    return test is None or test(fields)


def asked_steps(site: Site, fields: Mapping[str, str]) -> list[FlowStep]:
    """The steps that apply to these answers, in flow order (a ``when`` only looks at
    earlier steps, so one pass decides them all)."""
    return [step for step in site.flow if applies(step, fields)]


def next_step(site: Site, fields: Mapping[str, str]) -> FlowStep | None:
    """The first step that applies and is neither answered nor skipped; None when done."""
    for step in site.flow:
        if step.field not in fields and applies(step, fields):
            return step
    return None


def derived_fields(site: Site, fields: Mapping[str, str]) -> dict[str, str]:
    """``score`` and ``qualified`` for these answers (CONTRACT §12): the chosen options'
    scores of the steps that apply, plus 10 for an email and 10 for a phone. Empty for
    a site that neither scores options nor qualifies."""
    if not site.scores:
        return {}
    total = 0
    for name, test, scores in site.score_table:
        score = scores.get(fields.get(name, ""), 0)  # answers are stored as the value
        if score and (test is None or test(fields)):
            total += score
    total += 10 * bool(fields.get("email")) + 10 * bool(fields.get("phone"))
    derived = {"score": str(total)}
    if site.qualify is not None:
        derived["qualified"] = "true" if total >= site.qualify.qualified_at else "false"
    return derived


def job_type_of(site: Site, fields: Mapping[str, str]) -> str | None:
    """The job type of the first chosen option that names one, else the site's."""
    for step in asked_steps(site, fields):
        choice = step.choice(fields.get(step.field, "")) if step.options else None
        if choice is not None and choice.job_type_id:
            return choice.job_type_id
    return site.job_type_id


def _ask(site: Site, step: FlowStep | None) -> tuple[dict[str, Any], ...]:
    if step is None:
        return ({"text": site.thanks},)
    return ({"text": step.ask, "prompt": prompt_of(step)},)


def resuming(site: Site, fields: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    """What the bot says when an agent gives the chat back: the next unanswered step's
    question (nothing when every step is answered: the visitor may just submit)."""
    step = next_step(site, fields)
    return _ask(site, step) if step else ()


def opening(site: Site, fields: dict[str, str]) -> tuple[dict[str, Any], ...]:
    """Greeting plus the first question of a new session."""
    return ({"text": site.greeting},) + _ask(site, next_step(site, fields))


def _kind_of(site: Site, name: str) -> tuple[FieldKind, FlowStep | None]:
    step = site.steps_by_field.get(name)
    if step is not None:
        return step.kind, step
    if name in _EXTRA_KINDS:
        return _EXTRA_KINDS[name], None
    raise FieldInvalid(f"Unknown field '{name}'")


def _phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise FieldInvalid("That doesn't look like a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise FieldInvalid("That doesn't look like a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        raise FieldInvalid("That doesn't look like an email address") from None


def validate(site: Site, name: str, value: str) -> str:
    """The normalised value of field ``name`` (E.164 phone, normalised email).

    An empty value means "skip" and is returned as ``""`` for optional steps.

    Raises:
        FieldInvalid: unknown field, required step skipped, or a bad value.
    """
    kind, step = _kind_of(site, name)
    value = " ".join(value.split())
    if not value:
        if step is not None and step.required:
            raise FieldInvalid("This one is required")
        return ""
    if kind is FieldKind.EMAIL:
        return _email(value)
    if kind is FieldKind.PHONE:
        return _phone(value, site.phone_region)
    if kind is FieldKind.SLOT:  # on the grid, free, bookable: decided where Redis is
        if not _SLOT_VALUE.match(value):
            raise FieldInvalid("Please pick one of the times offered")
        return value
    if kind is FieldKind.CHOICE:
        assert step is not None
        choice = step.choice(value)
        if choice is None:
            raise FieldInvalid("Please pick one of the options")
        return choice.value
    if len(value) > _LIMITS[kind]:
        raise FieldInvalid(f"Please keep it under {_LIMITS[kind]} characters")
    return value


def extract_contacts(text: str, region: str) -> dict[str, str]:
    """Email and phone numbers found in free text, normalised (first of each)."""
    found: dict[str, str] = {}
    for candidate in _EMAIL_IN_TEXT.findall(text) if "@" in text else ():
        try:
            found["email"] = _email(candidate.strip(".'"))
            break
        except FieldInvalid:
            continue
    if sum(map(str.isdigit, text)) < _MIN_PHONE_DIGITS:
        return found  # the matcher is slow; no number has fewer digits than this
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        found["phone"] = phonenumbers.format_number(
            match.number, phonenumbers.PhoneNumberFormat.E164
        )
        break
    return found


def _with_derived(site: Site, fields: dict[str, str], updates: dict[str, str]) -> dict[str, str]:
    """``updates`` plus the derived fields that change with them."""
    merged = {**fields, **updates}
    derived = derived_fields(site, merged)
    return {**updates, **{k: v for k, v in derived.items() if fields.get(k) != v}}


def _advance(site: Site, fields: dict[str, str], updates: dict[str, str]) -> Outcome:
    updates = _with_derived(site, fields, updates)
    merged = {**fields, **updates}
    step = next_step(site, merged)
    return Outcome(
        updates=updates,
        replies=_ask(site, step),
        step=step.field if step else DONE,
        completes=step is None,
    )


def on_field(site: Site, fields: dict[str, str], name: str, value: str) -> Outcome:
    """A structured answer: validate, store, ask the next question.

    Raises:
        FieldInvalid: see :func:`validate`.
    """
    step = site.steps_by_field.get(name)
    if step is not None and not applies(step, fields):
        raise FieldInvalid("That question does not apply to your earlier answers")
    return _advance(site, fields, {name: validate(site, name, value)})


def on_message(site: Site, fields: dict[str, str], text: str) -> Outcome:
    """Free text: fills email/phone only if still empty; never completes alone.

    The bot only speaks when the text answered the question it was asking.
    """
    found = extract_contacts(text, site.phone_region)
    updates = _with_derived(site, fields, {k: v for k, v in found.items() if not fields.get(k)})
    current = next_step(site, fields)
    after = next_step(site, {**fields, **updates})
    if after is None:
        # §4: free text never completes a session; it waits for submit or idles out.
        return Outcome(updates=updates, step=DONE)
    if after is current:
        return Outcome(updates=updates, step=after.field)
    return Outcome(updates=updates, replies=_ask(site, after), step=after.field)


def on_submit(site: Site, fields: dict[str, str]) -> Outcome:
    """The visitor is done: complete with whatever was captured."""
    current = next_step(site, fields)
    return Outcome(
        replies=({"text": site.thanks},),
        step=current.field if current else DONE,
        completes=True,
    )
