"""Field lookup with aliases, E.164 and the readable transcript (pure)."""

from __future__ import annotations

from chatlead.formats.transcript_text import (
    TRUNCATED_MARKER,
    e164,
    lead_field,
    name_parts,
    readable_transcript,
)
from fakes.leads import lead, message


def test_canonical_fields_are_found():
    the_lead = lead({"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+14155550100"})
    assert lead_field(the_lead, "name") == "Ada Lovelace"
    assert lead_field(the_lead, "email") == "ada@example.com"
    assert lead_field(the_lead, "phone") == "+14155550100"
    assert lead_field(the_lead, "company") is None


def test_phone_aliases_in_any_spelling():
    for alias in ("phone_number", "phonenumber", "phoneNumber", "Phone-Number"):
        assert lead_field(lead({alias: "+14155550100"}), "phone") == "+14155550100"


def test_first_and_last_name_make_the_name():
    the_lead = lead({"first_name": "Grace", "last_name": "Hopper"})
    assert lead_field(the_lead, "name") == "Grace Hopper"
    assert name_parts(the_lead) == ("Grace", "Hopper")
    assert lead_field(lead({"firstName": "Grace"}), "name") == "Grace"


def test_site_company_is_not_the_visitors_company():
    the_lead = lead({"name": "Ada"})
    assert the_lead["company"] == "Acme Plumbing"
    assert lead_field(the_lead, "company") is None
    assert lead_field(lead({"company_name": "Analytical Engines"}), "company") == (
        "Analytical Engines"
    )


def test_blank_values_count_as_missing():
    assert lead_field(lead({"email": "   "}), "email") is None


def test_name_split():
    assert name_parts(lead({"name": "Mary  Ann Smith"})) == ("Mary", "Ann Smith")
    assert name_parts(lead({"name": "Cher"})) == ("Cher", None)
    assert name_parts(lead({"email": "x@example.com"})) == (None, None)


def test_e164():
    assert e164("(415) 555-0100", "US") == "+14155550100"
    assert e164("020 7946 0958", "GB") == "+442079460958"
    assert e164("+14155550100") == "+14155550100"
    assert e164(" call me ") == "call me"


def test_transcript_lines_name_speakers_in_utc():
    the_lead = lead({"name": "Ada"})
    the_lead["transcript"][0]["createdTime"] = "2026-11-23T15:05:59.999+01:00"
    text = readable_transcript(the_lead)
    assert text.splitlines() == [
        "2026-11-23 14:05 UTC  Bot: What's your name?",
        "2026-11-23 14:02 UTC  Visitor: Ada",
    ]


def test_multiline_messages_are_indented():
    the_lead = lead({})
    the_lead["transcript"] = [message(3, "line one\nline two")]
    assert readable_transcript(the_lead) == (
        "2026-11-23 14:03 UTC  Visitor: line one\n    line two"
    )


def test_empty_transcript():
    the_lead = lead({})
    the_lead["transcript"] = []
    assert readable_transcript(the_lead) == ""


def test_truncation_keeps_whole_lines_and_marks_the_cut():
    the_lead = lead({})
    the_lead["transcript"] = [
        message(i % 60, f"message number {i} " + "x" * 80) for i in range(300)
    ]
    text = readable_transcript(the_lead, limit=10_000)
    assert len(text) <= 10_000
    assert text.endswith("\n" + TRUNCATED_MARKER)
    kept = text.splitlines()[:-1]
    assert all(line.endswith("x" * 80) for line in kept)
    assert kept[0].endswith("Visitor: message number 0 " + "x" * 80)


def test_one_huge_message_is_cut_inside():
    the_lead = lead({})
    the_lead["transcript"] = [message(1, "y" * 50_000)]
    text = readable_transcript(the_lead, limit=500)
    assert len(text) <= 500
    assert text.endswith(TRUNCATED_MARKER)
    assert text.startswith("2026-11-23 14:01 UTC  Visitor: yyy")
