from __future__ import annotations

import pytest
from chatlead import flow
from chatlead.errors import FieldInvalid
from chatlead.sites import FlowStep, Site
from hypothesis import given
from hypothesis import strategies as st

SITE = Site(id="acme")


def test_opening_greets_and_asks_the_first_step() -> None:
    greeting, ask = flow.opening(SITE, {})
    assert greeting == {"text": SITE.greeting}
    assert ask["prompt"] == {"field": "name", "kind": "name"}


def test_answers_advance_through_the_flow_and_complete() -> None:
    fields: dict[str, str] = {}
    for name, value, expect_next in [
        ("name", "Ada", "email"),
        ("email", "Ada@Example.com", "phone"),
        ("phone", "(202) 555-0143", "message"),
    ]:
        outcome = flow.on_field(SITE, fields, name, value)
        fields.update(outcome.updates)
        assert outcome.step == expect_next
        assert outcome.replies[-1]["prompt"]["field"] == expect_next
        assert not outcome.completes
    assert fields == {"name": "Ada", "email": "Ada@example.com", "phone": "+12025550143"}
    last = flow.on_field(SITE, fields, "message", "Leaky tap")
    assert last.completes and last.step == flow.DONE
    assert last.replies == ({"text": SITE.thanks},)


def test_empty_value_skips_optional_but_not_required() -> None:
    with pytest.raises(FieldInvalid, match="required"):
        flow.on_field(SITE, {}, "name", "  ")
    outcome = flow.on_field(SITE, {"name": "A", "email": "a@b.co"}, "phone", "")
    assert outcome.updates == {"phone": ""} and outcome.step == "message"


def test_fields_arrive_in_any_order_later_value_wins() -> None:
    outcome = flow.on_field(SITE, {}, "email", "a@b.co")
    assert outcome.step == "name"
    again = flow.on_field(SITE, outcome.updates, "email", "c@d.co")
    assert again.updates == {"email": "c@d.co"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", "not-an-email"),
        ("phone", "12"),
        ("phone", "call me"),
        ("nickname", "x"),
        ("name", "x" * 101),
    ],
)
def test_invalid_values_raise(name: str, value: str) -> None:
    with pytest.raises(FieldInvalid):
        flow.validate(SITE, name, value)


def test_phone_uses_the_site_region() -> None:
    uk = Site(id="uk", phone_region="GB")
    assert flow.validate(uk, "phone", "020 7946 0018") == "+442079460018"


def test_choice_matches_options_case_insensitively() -> None:
    site = Site(
        id="c",
        flow=(
            FlowStep(field="service", kind="choice", ask="Which?", options=("Repair", "Install")),
        ),
    )
    assert flow.validate(site, "service", "repair") == "Repair"
    with pytest.raises(FieldInvalid):
        flow.validate(site, "service", "paint")
    assert flow.prompt_of(site.flow[0])["options"] == [
        {"label": "Repair", "value": "Repair"},
        {"label": "Install", "value": "Install"},
    ]


def test_free_text_fills_empty_contact_fields_only() -> None:
    outcome = flow.on_message(
        SITE, {"name": "Ada"}, "reach me at ada@example.com or 202-555-0143 please"
    )
    assert outcome.updates == {"email": "ada@example.com", "phone": "+12025550143"}
    assert outcome.step == "message" and not outcome.completes
    kept = flow.on_message(SITE, {"email": "old@example.com"}, "new@example.com")
    assert kept.updates == {}


def test_free_text_never_completes() -> None:
    fields = {"name": "Ada", "phone": "", "message": ""}
    outcome = flow.on_message(SITE, fields, "ada@example.com")
    assert outcome.updates == {"email": "ada@example.com"}
    assert not outcome.completes and outcome.replies == ()


def test_free_text_without_contacts_changes_nothing() -> None:
    outcome = flow.on_message(SITE, {}, "hello there")
    assert outcome == flow.Outcome(step="name")


def test_submit_completes_with_whatever_was_captured() -> None:
    outcome = flow.on_submit(SITE, {"name": "Ada"})
    assert outcome.completes and outcome.step == "email"


@given(st.text(max_size=200))
def test_extractor_never_raises(text: str) -> None:
    found = flow.extract_contacts(text, "US")
    assert set(found) <= {"email", "phone"}
