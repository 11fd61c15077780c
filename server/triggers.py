"""Proactive openers: ``[[sites.<id>.triggers]]`` in a site file (CONTRACT §13).

Pure data, validated when the config loads (a bad regex or an empty rule stops the
start, naming the trigger). Each trigger shows ``message`` as a bubble by the launcher
when all of its conditions hold (time on page, scroll depth, exit intent on desktop,
the page URL), at most once per visitor per ``every``; the chat it opens reports the
trigger's ``id`` in ``hello.trigger`` (lead field ``trigger``).

```toml
[[sites.acme.triggers]]
id = "pricing"
url_contains = "/pricing"
after = "20s"
message = "Questions about our prices? Ask away."
```
"""

from __future__ import annotations

import re
import re._constants as re_constants
import re._parser as re_parser
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .units import parse_duration

__all__ = ["Trigger", "unique_ids"]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# what Python and the browsers' JavaScript read alike: no lookbehind, named groups,
# inline flags, possessive quantifiers or atomic groups
_NOT_PORTABLE = re.compile(r"\(\?(<[=!]|P?<|[aiLmsux-]+[:)]|>)|[*+?}]\+")


def _nested_repeat(items: Any, inside: bool = False) -> bool:
    """Whether a repeat without an upper bound holds another repeat (``(a+)+``,
    ``(\\w+\\s?)*``): the pattern shape that backtracks exponentially on a miss."""
    for op, arg in items:
        if op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT):
            _low, high, sub = arg
            if inside and high > 1:
                return True
            if _nested_repeat(sub, inside or high == re_constants.MAXREPEAT):
                return True
        elif op is re_constants.SUBPATTERN and _nested_repeat(arg[-1], inside):
            return True
        elif op is re_constants.BRANCH and any(_nested_repeat(b, inside) for b in arg[1]):
            return True
    return False


class Trigger(BaseModel):
    """One proactive opener; every condition given must hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = ""
    """Named in ``hello.trigger``; default ``trigger-<n>`` (its place in the list)."""
    message: Annotated[str, Field(min_length=1, max_length=300)]
    after: float | None = None
    """Seconds on the page."""
    scroll: Annotated[int | None, Field(ge=1, le=100)] = None
    """Percent of the page scrolled."""
    exit_intent: bool = False
    """The pointer leaves the page towards the browser's tabs (desktop only)."""
    url_contains: Annotated[str | None, Field(min_length=1, max_length=500)] = None
    url_matches: Annotated[str | None, Field(min_length=1, max_length=500)] = None
    """A regular expression searched in the page URL, in the subset Python and
    JavaScript read alike."""
    every: float = 86400.0
    """Shown at most once per visitor per this long (default ``1d``)."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if value and not _ID.match(value):
            raise ValueError(f"{value!r} is not a trigger id; use letters, digits, - and _")
        return value

    @field_validator("after", "every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("url_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"url_matches is not a regular expression: {exc}") from None
        if _NOT_PORTABLE.search(value):
            raise ValueError("url_matches uses syntax browsers read differently; simplify it")
        if _nested_repeat(re_parser.parse(value)):
            raise ValueError(
                "url_matches repeats a part that repeats itself (e.g. (a+)+), which can take"
                " a browser seconds on one URL; simplify it"
            )
        return value

    @model_validator(mode="after")
    def _has_a_condition(self) -> Trigger:
        if (
            self.after is None
            and self.scroll is None
            and not self.exit_intent
            and self.url_contains is None
            and self.url_matches is None
        ):
            raise ValueError(
                "a trigger needs a condition: after, scroll, exit_intent, url_contains "
                "or url_matches"
            )
        return self


def unique_ids(triggers: tuple[Trigger, ...]) -> tuple[Trigger, ...]:
    """``triggers`` with default ids filled in; ValueError when two share an id."""
    named = tuple(
        t if t.id else t.model_copy(update={"id": f"trigger-{n}"})
        for n, t in enumerate(triggers, start=1)
    )
    ids = [t.id for t in named]
    if len(set(ids)) != len(ids):
        raise ValueError("each trigger id may appear once in a site")
    return named
