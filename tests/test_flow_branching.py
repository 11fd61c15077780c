"""Flows that qualify (CONTRACT §12): branching on earlier answers, choices as
label/value/score/job type, score and qualified fields. Pure functions."""

from __future__ import annotations

import pytest
from chatlead import flow
from chatlead.errors import FieldInvalid
from chatlead.lead import build_lead
from chatlead.session import SessionRecord, SessionStatus
from chatlead.sites import MAX_OPTIONS, Choice, FlowStep, Qualify, Site
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

SERVICE = FlowStep(
    field="service",
    kind="choice",
    ask="What do you need?",
    required=True,
    options=(
        {"label": "Leak repair", "value": "leak", "score": 30, "job_type_id": "plumbing-repair"},
        {"label": "New installation", "value": "install", "score": 50, "job_type_id": "install"},
        "Something else",
    ),
)
BUDGET = FlowStep(
    field="budget",
    kind="choice",
    ask="Budget?",
    options=(
        {"label": "Under $1k", "value": "small"},
        {"label": "$1k+", "value": "big", "score": 20},
    ),
    when={"field": "service", "in": ["leak", "install"]},
)
DETAILS = FlowStep(
    field="details", ask="Tell us more", when={"field": "service", "equals": "Something else"}
)


def _record(fields: dict[str, str]) -> SessionRecord:
    return SessionRecord(
        id="0123456789abcdef01234567",
        site="acme",
        status=SessionStatus.COMPLETED,
        seq=1,
        created_ms=0,
        active_ms=0,
        step="done",
        user_id="u",
        fields=fields,
    )


SITE = Site(
    id="acme",
    job_type_id="general",
    flow=(SERVICE, BUDGET, DETAILS, FlowStep(field="email", ask="Email?", required=True)),
    qualify=Qualify(qualified_at=60),
)


def test_bare_options_are_their_own_label_and_value() -> None:
    assert SERVICE.options[2] == Choice(label="Something else", value="Something else")
    assert flow.prompt_of(SERVICE)["options"][0] == {"label": "Leak repair", "value": "leak"}


def test_an_answer_may_give_the_label_or_the_value_and_the_value_is_stored() -> None:
    assert flow.validate(SITE, "service", "leak") == "leak"
    assert flow.validate(SITE, "service", "new INSTALLATION") == "install"
    with pytest.raises(FieldInvalid, match="pick one"):
        flow.validate(SITE, "service", "roofing")


def test_steps_are_asked_only_when_their_condition_holds() -> None:
    first = flow.on_field(SITE, {}, "service", "Leak repair")
    assert first.step == "budget"
    other = flow.on_field(SITE, {}, "service", "Something else")
    assert other.step == "details"  # budget skipped: not stored, not asked
    assert "budget" not in other.updates
    with pytest.raises(FieldInvalid, match="does not apply"):
        flow.on_field(SITE, {"service": "Something else"}, "budget", "big")


def test_score_qualified_and_job_type() -> None:
    fields: dict[str, str] = {}
    for name, value in (("service", "install"), ("budget", "big"), ("email", "a@b.example")):
        outcome = flow.on_field(SITE, fields, name, value)
        fields |= outcome.updates
    assert outcome.completes
    assert (fields["score"], fields["qualified"]) == ("80", "true")  # 50 + 20 + 10 for the email
    assert flow.job_type_of(SITE, fields) == "install"
    assert flow.derived_fields(SITE, {"service": "leak"}) == {"score": "30", "qualified": "false"}
    assert flow.job_type_of(SITE, {"service": "Something else"}) == "general"


def test_a_changed_answer_drops_what_no_longer_applies() -> None:
    fields = {"service": "leak", "budget": "big", "email": "a@b.example", "score": "60"}
    changed = flow.on_field(SITE, fields, "service", "Something else")
    fields |= changed.updates
    assert changed.step == "details"  # re-evaluated: the other branch now
    assert fields["score"] == "10"  # the budget no longer counts
    record = _record(fields)
    names = [f["name"] for f in build_lead(record, SITE, abandoned=False)["fields"]]
    assert "budget" not in names and "score" in names and "qualified" in names


def test_a_site_without_scores_gets_no_score_field() -> None:
    plain = Site(id="plain")
    assert flow.derived_fields(plain, {"email": "a@b.example"}) == {}
    assert "score" not in flow.on_field(plain, {}, "name", "Ada").updates


def test_visitors_cannot_set_derived_fields() -> None:
    with pytest.raises(FieldInvalid, match="Unknown field"):
        flow.on_field(SITE, {}, "score", "1000")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [
                {"field": "a", "ask": "?", "when": {"field": "b", "present": True}},
                {"field": "b", "ask": "?"},
            ],
            "depends on 'b', which no earlier step asks",
        ),
        ([{"field": "a", "ask": "?", "when": {"field": "a", "present": True}}], "depends on 'a'"),
        ([{"field": "a", "ask": "?", "when": {"field": "a"}}], "exactly one"),
        (
            [{"field": "a", "ask": "?", "kind": "choice", "options": ["x"] * 2}],
            "each option's value may appear once",
        ),
        (
            [
                {
                    "field": "a",
                    "ask": "?",
                    "kind": "choice",
                    "options": [str(i) for i in range(MAX_OPTIONS + 1)],
                }
            ],
            "at most",
        ),
    ],
)
def test_bad_flows_are_refused(steps: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Site(id="x", flow=steps)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["service", "budget", "details", "email"]), st.text(max_size=12)),
        max_size=12,
    )
)
def test_any_answer_order_reaches_a_consistent_state(answers: list[tuple[str, str]]) -> None:
    """Whatever is answered in whatever order: the next question always applies, never
    one already answered; the lead holds only what applies; done means nothing is left."""
    values = {"service": ["leak", "install", "Something else"], "budget": ["small", "big"]}
    fields: dict[str, str] = {}
    for name, text in answers:
        value = values[name][len(text) % len(values[name])] if name in values else text or "x"
        if name == "email":
            value = "a@b.example"
        try:
            outcome = flow.on_field(SITE, fields, name, value)
        except FieldInvalid:
            continue
        fields |= outcome.updates
        step = flow.next_step(SITE, fields)
        if step is not None:
            assert flow.applies(step, fields) and step.field not in fields
            assert outcome.step == step.field
        else:
            assert outcome.completes
    asked = {s.field for s in flow.asked_steps(SITE, fields)}
    assert "budget" not in asked or fields.get("service") in ("leak", "install")
    record = _record(fields)
    names = {f["name"] for f in build_lead(record, SITE, abandoned=False)["fields"]}
    assert names & {"service", "budget", "details", "email"} <= asked


async def test_qualified_leads_go_where_a_destination_asks_for_them(
    app_factory: object, tmp_path: object
) -> None:
    from pathlib import Path

    from tests.conftest import SECRET, Receiver, Visitor, wait_for

    receiver = Receiver().start()
    path = Path(str(tmp_path)) / "sites.toml"
    path.write_text(
        f"""
[sites.acme]
[sites.acme.qualify]
qualified_at = 60

[[sites.acme.flow]]
field = "service"
kind = "choice"
ask = "What do you need?"
options = [
  {{ label = "Leak repair", value = "leak", score = 30 }},
  {{ label = "New installation", value = "install", score = 50, job_type_id = "install" }},
]
[[sites.acme.flow]]
field = "email"
ask = "Email?"

[[sites.acme.destinations]]
name = "all"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true

[[sites.acme.destinations]]
name = "sales"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true
when = {{ qualified = true }}
"""
    )
    try:
        app = await app_factory(config=path)  # type: ignore[operator]
        sessions = {}
        for answer in ("New installation", "leak"):
            async with Visitor.connect(app.ws_url, site="acme") as v:
                prompt = next(f for f in v.frames if f.get("prompt"))["prompt"]
                assert prompt["options"][1] == {"label": "New installation", "value": "install"}
                await v.field("service", answer)
                await v.field("email", "ada@example.com")
                assert (await v.expect("lead"))["status"] == "completed"
            sessions[answer] = str(v.welcome["session_id"])
        hot, cold = (f"evt_{sessions[a]}_completed" for a in ("New installation", "leak"))
        await wait_for(
            lambda: {f"{hot}:all", f"{cold}:all", f"{hot}:sales"} <= set(receiver.ids()), 5
        )
        assert f"{cold}:sales" not in receiver.ids()  # 40 points: not qualified
        lead = next(e for e in receiver.events if e["id"] == f"{hot}:sales")["data"]
        fields = {f["name"]: f["value"] for f in lead["fields"]}
        assert (fields["service"], fields["score"], fields["qualified"]) == (
            "install",
            "60",
            "true",
        )
        assert lead["jobTypeId"] == "install"
    finally:
        receiver.stop()
