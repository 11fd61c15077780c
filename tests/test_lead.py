from __future__ import annotations

from chatlead.lead import build_lead
from chatlead.session import SessionRecord, SessionStatus, page_meta
from chatlead.sites import Site

SITE = Site(id="acme", company="Acme Plumbing", job_type_id="jt1", place_id="p9")


def _record(**overrides: object) -> SessionRecord:
    base: dict[str, object] = {
        "id": "0123456789abcdef01234567",
        "site": "acme",
        "status": SessionStatus.COMPLETED,
        "seq": 3,
        "created_ms": 0,
        "active_ms": 1000,
        "step": "done",
        "user_id": "v_1",
        "fields": {"email": "a@b.co", "name": "Ada", "phone": ""},
        "page": page_meta(
            "https://acme.example/?utm_source=g&utm_campaign=spring", "https://g.co/"
        ),
        "transcript": (
            {"seq": 1, "from": "bot", "text": "Name?", "ts": 0, "prompt": {"field": "name"}},
            {"seq": 2, "from": "visitor", "text": "Ada", "ts": 1000, "field": "name"},
            {
                "seq": 3,
                "from": "bot",
                "text": "Pick",
                "ts": 2000,
                "prompt": {"field": "s", "options": ["A", "B"]},
            },
        ),
    }
    base.update(overrides)
    return SessionRecord(**base)  # type: ignore[arg-type]


def test_external_lead_has_the_stentor_shape() -> None:
    lead = build_lead(_record(), SITE, abandoned=False)
    assert set(lead) == {
        "userId",
        "sessionId",
        "fields",
        "source",
        "company",
        "transcript",
        "jobTypeId",
        "placeId",
        "isAbandoned",
    }
    assert lead["fields"] == [
        {"name": "name", "value": "Ada"},
        {"name": "email", "value": "a@b.co"},
        {"name": "page_url", "value": "https://acme.example/?utm_source=g&utm_campaign=spring"},
        {"name": "referrer", "value": "https://g.co/"},
        {"name": "utm_source", "value": "g"},
        {"name": "utm_campaign", "value": "spring"},
    ]
    assert lead["source"] == "chat-widget" and lead["company"] == "Acme Plumbing"
    assert lead["isAbandoned"] is False


def test_transcript_messages_follow_the_seed_readme() -> None:
    bot, visitor, choice = build_lead(_record(), SITE, abandoned=True)["transcript"]
    assert bot == {
        "createdTime": "1970-01-01T00:00:00.000Z",
        "from": {"id": "bot"},
        "to": [{"id": "v_1"}],
        "message": "Name?",
        "attributes": {"seq": 1},
    }
    assert visitor == {
        "createdTime": "1970-01-01T00:00:01.000Z",
        "from": {"id": "v_1"},
        "to": [{"id": "bot"}],
        "message": "Ada",
        "attributes": {"seq": 2, "field": "name"},
    }
    assert choice["response"]["suggestions"] == [{"title": "A"}, {"title": "B"}]


def test_ref_id_is_carried_when_known() -> None:
    record = _record(ref_ids={"": "crm-42", ":copper": "c-7"})
    assert build_lead(record, SITE, abandoned=False)["refId"] == "crm-42"
    assert build_lead(record, SITE, abandoned=False, suffix=":copper")["refId"] == "c-7"
    assert "refId" not in build_lead(record, SITE, abandoned=False, suffix=":other")
    assert "refId" not in build_lead(_record(), SITE, abandoned=False)
