"""A flow's steps (CONTRACT §4, §12): the questions, their kinds and choices (pure data).

:mod:`chatlead.sites` holds them in a site's ``flow``; :mod:`chatlead.flow` walks them.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .conditions import Test, compiled, fields_named, parse_step
from .errors import FieldProblem

__all__ = ["DEFAULT_FLOW", "MAX_OPTIONS", "Choice", "FieldKind", "FlowStep", "check_flow"]


class FieldKind(StrEnum):
    NAME = "name"
    EMAIL = "email"
    PHONE = "phone"
    COMPANY = "company"
    TEXT = "text"
    CHOICE = "choice"
    SLOT = "slot"


_KIND_BY_FIELD = {"name": "name", "email": "email", "phone": "phone", "company": "company"}


MAX_OPTIONS = 50
"""Most options a choice step may offer (buttons a visitor can read)."""


class Choice(BaseModel):
    """One option of a choice step: what the visitor sees, what is stored, what it is
    worth (CONTRACT §12). A bare string in TOML is its own label and value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=100)
    score: int = Field(0, ge=-1000, le=1000)
    job_type_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"label": data, "value": data}
        if isinstance(data, dict) and "value" not in data and "label" in data:
            return {**data, "value": data["label"]}
        return data


class FlowStep(BaseModel):
    """One question of a site's scripted conversation; ``when``: asked only when that
    condition holds on the answers so far (:mod:`chatlead.conditions` normal form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    ask: str = Field(min_length=1, max_length=500)
    kind: FieldKind = FieldKind.TEXT
    required: bool = False
    options: tuple[Choice, ...] = Field(default=(), max_length=MAX_OPTIONS)
    when: dict[str, Any] | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> dict[str, Any] | None:
        return None if value is None else parse_step(value)

    @cached_property
    def asked_when(self) -> Test | None:
        """``when`` as a function of the answers so far (``None``: always asked)."""
        return None if self.when is None else compiled(self.when)

    def choice(self, answer: str) -> Choice | None:
        """The option an answer names, by value or label (case-insensitive)."""
        return self._choices.get(answer.casefold())

    @cached_property
    def _choices(self) -> dict[str, Choice]:
        by_label = {option.label.casefold(): option for option in reversed(self.options)}
        return by_label | {option.value.casefold(): option for option in self.options}

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data and "field" in data:
            data = {**data, "kind": _KIND_BY_FIELD.get(data["field"], "text")}
        return data

    @model_validator(mode="after")
    def _choice_has_options(self) -> FlowStep:
        if (self.kind is FieldKind.CHOICE) != bool(self.options):
            raise ValueError("options are required for kind 'choice' and only for it")
        values = [option.value.casefold() for option in self.options]
        if len(set(values)) != len(values):
            raise ValueError("each option's value may appear once in a step")
        return self


DEFAULT_FLOW: tuple[FlowStep, ...] = (
    FlowStep(field="name", ask="What's your name?", required=True),
    FlowStep(field="email", ask="What's the best email to reach you?", required=True),
    FlowStep(field="phone", ask="And a phone number? (optional)"),
    FlowStep(field="message", ask="What can we help you with?"),
)


def check_flow(steps: tuple[FlowStep, ...]) -> tuple[FlowStep, ...]:
    """A flow's own rules: a step at least, each field once, and each ``when`` naming
    only fields earlier steps ask.

    Raises:
        ValueError: the first rule broken (a ``FieldProblem`` naming the step's ``when``).
    """
    names = [step.field for step in steps]
    if not names:
        raise ValueError("a flow needs at least one step")
    if len(set(names)) != len(names):
        raise ValueError("each field may appear once in a flow")
    for i, step in enumerate(steps):
        unknown = sorted(fields_named(step.when or {"all": []}) - set(names[:i]))
        if unknown:
            raise FieldProblem(
                f"{i}.when",
                f"step {step.field!r} depends on {unknown[0]!r}, which no earlier step asks",
            )
    return steps
