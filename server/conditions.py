"""Conditions on a lead's fields (CONTRACT §9 destination ``when``, §12 step ``when``).

Pure. A condition as written in TOML is parsed once into a normal form that both
:func:`holds` (here) and the session scripts (``_prelude.lua``, ``holds``) evaluate:

* ``{"all": [c, ...]}`` / ``{"any": [c, ...]}``;
* ``{"field": name, "op": op, "value": v}`` with ``op`` one of ``equals`` (text),
  ``in`` / ``not_in`` (list of text), ``present`` (no value), ``at_least`` (number).

A field that is absent or empty matches no condition on it, ``not_in`` included: an
event that does not carry the field (``visitor.waiting`` has no score yet) is not
sent where a condition names it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "DERIVED_FIELDS",
    "Test",
    "compiled",
    "fields_named",
    "holds",
    "parse_step",
    "parse_when",
]

DERIVED_FIELDS = frozenset(
    {"score", "qualified", "appointment", "variant", "consent", "consent_at", "marketing_consent"}
)
"""Lead fields the server adds to what the flow asks (CONTRACT §12)."""

_OPS = ("equals", "in", "not_in", "present")


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"{where}: must be text, a number or true/false")


def parse_step(raw: Any) -> dict[str, Any]:
    """A step condition (``{field, equals}``, ``{field, in}``, ``{field, not_in}``,
    ``{field, present = true}``, ``{all}``, ``{any}``) in normal form.

    Raises:
        ValueError: the condition is malformed (the message says how).
    """
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("a condition is a table such as {field = 'service', equals = 'leak'}")
    for group in ("all", "any"):
        if group in raw:
            if len(raw) != 1:
                raise ValueError(f"{group!r} takes no other keys beside it")
            parts = raw[group]
            if not isinstance(parts, list) or not parts:
                raise ValueError(f"{group!r} needs a list of conditions")
            return {group: [parse_step(part) for part in parts]}
    field = raw.get("field")
    if not isinstance(field, str) or not field:
        raise ValueError("a condition needs 'field' (or 'all' / 'any')")
    given = [op for op in _OPS if op in raw]
    unknown = sorted(set(raw) - {"field", *_OPS})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; use field with one of {', '.join(_OPS)}")
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(_OPS)} with 'field'")
    op, value = given[0], raw[given[0]]
    if op == "present":
        if value is not True:
            raise ValueError("'present' can only be true")
        return {"field": field, "op": "present"}
    if op == "equals":
        return {"field": field, "op": op, "value": _text(value, op)}
    if not isinstance(value, list) or not value:
        raise ValueError(f"{op!r} needs a list of values")
    return {"field": field, "op": op, "value": [_text(v, op) for v in value]}


def parse_when(raw: Any) -> dict[str, Any]:
    """A destination's ``when``: ``score_at_least``, ``qualified`` and/or a step
    condition's keys; every key given must hold.

    Raises:
        ValueError: malformed (the message says how).
    """
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("use a table such as { score_at_least = 40 }")
    rest = dict(raw)
    parts: list[dict[str, Any]] = []
    if "score_at_least" in rest:
        score = rest.pop("score_at_least")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise ValueError("'score_at_least' must be a number")
        parts.append({"field": "score", "op": "at_least", "value": float(score)})
    if "qualified" in rest:
        qualified = rest.pop("qualified")
        if not isinstance(qualified, bool):
            raise ValueError("'qualified' must be true or false")
        parts.append({"field": "qualified", "op": "equals", "value": _text(qualified, "")})
    if rest:
        parts.append(parse_step(rest))
    return parts[0] if len(parts) == 1 else {"all": parts}


Test = Callable[[Mapping[str, str]], bool]


def holds(condition: Mapping[str, Any], fields: Mapping[str, str]) -> bool:
    """Whether ``condition`` (normal form) holds on the lead's ``fields``."""
    return compiled(condition)(fields)


def compiled(condition: Mapping[str, Any]) -> Test:
    """``condition`` (normal form) as a function of the fields: decided once, then
    each evaluation is a few dictionary reads (a flow step asks it on every event)."""
    if "all" in condition or "any" in condition:
        parts = [compiled(part) for part in condition.get("all") or condition.get("any") or ()]
        if len(parts) == 1:
            return parts[0]
        if "all" in condition:
            return lambda fields: all(part(fields) for part in parts)
        return lambda fields: any(part(fields) for part in parts)
    name, op, wanted = condition["field"], condition["op"], condition.get("value")
    if op == "present":
        return lambda fields: bool(fields.get(name))
    if op == "equals":
        return lambda fields: fields.get(name) == wanted and bool(wanted)
    if op == "at_least":
        bound = float(wanted or 0)
        return lambda fields: _at_least(fields.get(name), bound)
    among = frozenset(wanted or ())
    if op == "in":
        return lambda fields: (value := fields.get(name)) in among and bool(value)
    return lambda fields: (value := fields.get(name)) not in among and bool(value)


def _at_least(value: str | None, bound: float) -> bool:
    if not value:
        return False
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number >= bound


def fields_named(condition: Mapping[str, Any]) -> set[str]:
    """Every field ``condition`` (normal form) looks at."""
    if "all" in condition or "any" in condition:
        parts = condition.get("all") or condition.get("any") or []
        return set().union(*(fields_named(part) for part in parts))
    return {condition["field"]}
