"""Conditions on a lead's fields: parsing, evaluation, and the scripts' twin of it."""

from __future__ import annotations

import json

import pytest
from chatlead.conditions import fields_named, holds, parse_step, parse_when
from chatlead.scripts import script_source

FIELDS = {"service": "leak", "score": "60", "qualified": "true", "email": "a@b.example"}

CASES = [
    ({"field": "service", "equals": "leak"}, True),
    ({"field": "service", "equals": "install"}, False),
    ({"field": "service", "in": ["leak", "install"]}, True),
    ({"field": "service", "not_in": ["leak"]}, False),
    ({"field": "service", "not_in": ["install"]}, True),
    ({"field": "phone", "not_in": ["x"]}, False),  # absent: matches nothing
    ({"field": "phone", "present": True}, False),
    ({"field": "email", "present": True}, True),
    ({"all": [{"field": "service", "equals": "leak"}, {"field": "email", "present": True}]}, True),
    ({"any": [{"field": "service", "equals": "x"}, {"field": "phone", "present": True}]}, False),
    ({"any": [{"field": "service", "equals": "x"}, {"field": "score", "equals": 60}]}, True),
]
WHEN_CASES = [
    ({"score_at_least": 40}, True),
    ({"score_at_least": 60}, True),
    ({"score_at_least": 60.5}, False),
    ({"qualified": True}, True),
    ({"qualified": False}, False),
    ({"score_at_least": 40, "field": "service", "equals": "install"}, False),
    ({"score_at_least": 40, "qualified": True, "field": "service", "in": ["leak"]}, True),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_step_conditions(raw, expected):
    assert holds(parse_step(raw), FIELDS) is expected


@pytest.mark.parametrize(("raw", "expected"), WHEN_CASES)
def test_destination_when(raw, expected):
    assert holds(parse_when(raw), FIELDS) is expected


def test_an_event_without_the_field_never_matches():
    assert not holds(parse_when({"score_at_least": 0}), {"name": "Ada"})
    assert not holds(parse_when({"score_at_least": 0}), {"score": "not a number"})
    assert not holds(parse_when({"score_at_least": 0}), {"score": "nan"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "table"),
        ("score > 40", "table"),
        ({"score_at_least": "40"}, "number"),
        ({"score_at_least": True}, "number"),
        ({"qualified": "yes"}, "true or false"),
        ({"field": "service"}, "exactly one"),
        ({"field": "service", "equals": "a", "in": ["a"]}, "exactly one"),
        ({"field": "service", "in": []}, "list"),
        ({"field": "service", "in": "leak"}, "list"),
        ({"field": "service", "present": False}, "only be true"),
        ({"field": "service", "matches": "l.*"}, "unknown key 'matches'"),
        ({"equals": "a"}, "needs 'field'"),
        ({"all": []}, "list of conditions"),
        ({"all": [{"field": "a", "present": True}], "field": "b"}, "no other keys"),
        ({"field": "service", "equals": {"a": 1}}, "must be text"),
    ],
)
def test_malformed_conditions_say_what_is_wrong(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_when(raw)


def test_fields_named():
    condition = parse_when({"score_at_least": 1, "any": [{"field": "a", "present": True}]})
    assert fields_named(condition) == {"score", "a"}


# --- the scripts evaluate the same normal form the same way -------------------------

_HOLDS = script_source("sweep").split("-- Write a lead event")[0] + (
    "\nreturn holds(cjson.decode(ARGV[1]), cjson.decode(ARGV[2])) and 1 or 0"
)


async def test_the_scripts_agree_with_python(rds):
    cases = [(parse_step(raw), expected) for raw, expected in CASES]
    cases += [(parse_when(raw), expected) for raw, expected in WHEN_CASES]
    for condition, expected in cases:
        for fields in (FIELDS, {"score": "nan"}, {}):
            got = await rds.eval(_HOLDS, 0, json.dumps(condition), json.dumps(fields or {"_": ""}))
            assert bool(got) is holds(condition, fields), (condition, fields)
        assert holds(condition, FIELDS) is expected
