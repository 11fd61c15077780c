"""Format ``slack``: the Block Kit payload (pure, every limit), then a fake incoming webhook."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from chatlead import formats
from chatlead.formats import Context
from chatlead.formats import send as dispatch
from chatlead.formats.slack import (
    BLOCK_LIMIT,
    BUTTON_TEXT,
    CUT_MARKER,
    FIELD_LIMIT,
    HEADER_LIMIT,
    SECTION_LIMIT,
    build_payload,
    cut,
    send,
    slack_escape,
)
from chatlead.sites import FieldProblem
from fakes.leads import event_for, lead, message, site_with
from fakes.slack import HOOK_PATH, FakeSlack

from tests.conftest import free_port

LINK = "https://chat.acme.example/admin/live?session=3f9a1c2e7b6d4e0f9a8b"


def slack_event(the_lead=None, url="https://hooks.slack.com/services/T0/B0/x", kind=None):
    event = event_for(site_with(format="slack", url=url), lead() if the_lead is None else the_lead)
    return replace(event, type=kind) if kind else event


def mrkdwn_texts(payload) -> list[str]:
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if block["type"] == "section":
            texts += [block["text"]["text"]] if "text" in block else []
            texts += [item["text"] for item in block.get("fields", [])]
        if block["type"] == "context":
            texts += [element["text"] for element in block["elements"]]
    return texts


def checked(payload) -> dict:
    """``payload``, after the fake found nothing Slack would refuse in it."""
    assert FakeSlack.check(payload) == []
    return payload


# --- pure -----------------------------------------------------------------------


def test_payload_has_header_fields_transcript_context_and_button():
    payload = checked(build_payload(slack_event(), LINK))
    header, fields, transcript, context, actions = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New lead: Ada Lovelace (Acme Plumbing)"},
    }
    assert [f["text"] for f in fields["fields"]] == [
        "*Name*\nAda Lovelace",
        "*Email*\nada@example.com",
    ]
    assert transcript["text"]["text"].startswith("*Conversation*\n```")
    assert "Visitor: ada@example.com" in transcript["text"]["text"]
    assert "Acme Plumbing" in context["elements"][0]["text"]
    button = actions["elements"][0]
    assert (button["type"], button["url"], button["text"]["text"]) == ("button", LINK, BUTTON_TEXT)
    assert payload["text"].startswith("New lead: Ada Lovelace (Acme Plumbing)\n")
    assert LINK in payload["text"]


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        ("lead.completed", "New lead"),
        ("lead.abandoned", "Abandoned chat"),
        ("visitor.waiting", "Visitor waiting"),
        ("lead.test", "[Test] New lead"),
    ],
)
def test_header_names_the_event(kind, title):
    header = build_payload(slack_event(kind=kind), LINK)["blocks"][0]["text"]["text"]
    assert header == f"{title}: Ada Lovelace (Acme Plumbing)"


def test_without_a_name_the_email_or_a_placeholder_stands_in():
    by_email = build_payload(slack_event(lead({"email": "ada@example.com"})), LINK)
    assert by_email["blocks"][0]["text"]["text"] == "New lead: ada@example.com (Acme Plumbing)"
    nobody = checked(build_payload(slack_event(lead({})), LINK))
    assert nobody["blocks"][0]["text"]["text"] == "New lead: Website visitor (Acme Plumbing)"
    assert nobody["blocks"][1]["text"]["text"] == "_No details captured._"


def test_escape_touches_only_the_three_control_characters():
    assert slack_escape("<!channel> & <https://evil|click> *bold* é") == (
        "&lt;!channel&gt; &amp; &lt;https://evil|click&gt; *bold* é"
    )


def test_visitor_markup_cannot_ping_a_channel_or_hide_a_link():
    the_lead = lead(
        {"name": "<!channel>", "message": "see <https://evil.example|your invoice> & pay"}
    )
    payload = checked(build_payload(slack_event(the_lead), LINK))
    joined = "\n".join(mrkdwn_texts(payload))
    assert "<" not in joined and ">" not in joined
    assert "&lt;!channel&gt;" in joined
    assert "&lt;https://evil.example|your invoice&gt; &amp; pay" in joined
    # a header is plain_text: Slack shows it literally, no escaping
    assert payload["blocks"][0]["text"]["text"] == "New lead: <!channel> (Acme Plumbing)"


def test_a_long_header_is_cut_and_the_full_text_kept():
    name = "Ada " + "Lovelace" * 40
    event = slack_event(lead({"name": name}))
    event = replace(event, site=event.site.model_copy(update={"company": "Acme " * 40}))
    payload = checked(build_payload(event, LINK))
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) == HEADER_LIMIT and header.endswith(CUT_MARKER)
    assert header.startswith("New lead: Ada LovelaceLovelace")
    assert f"Name: {name}" in payload["text"]


def test_a_long_value_is_cut_to_the_field_limit_and_kept_in_text():
    value = "x" * 5000
    payload = checked(build_payload(slack_event(lead({"message": value})), LINK))
    field = payload["blocks"][1]["fields"][0]["text"]
    assert len(field) == FIELD_LIMIT and field.endswith(CUT_MARKER)
    assert value in payload["text"]


def test_a_cut_never_splits_an_entity():
    for size in range(1990, 2010):
        text = cut(slack_escape("&" * size), FIELD_LIMIT)
        assert len(text) <= FIELD_LIMIT
        assert text.removesuffix(CUT_MARKER).endswith("&amp;")
    assert cut("short", 10) == "short"
    checked(build_payload(slack_event(lead({"message": "<" * 3000})), LINK))


def test_fields_are_grouped_ten_to_a_section():
    fields = {f"q{i}": f"answer {i}" for i in range(25)}
    payload = checked(build_payload(slack_event(lead(fields)), LINK))
    sections = [b for b in payload["blocks"] if b["type"] == "section" and "fields" in b]
    assert [len(s["fields"]) for s in sections] == [10, 10, 5]
    assert sections[0]["fields"][0]["text"] == "*Q0*\nanswer 0"


def test_hundreds_of_fields_stay_within_fifty_blocks():
    fields = {f"question_{i}": f"answer {i}" for i in range(600)}
    payload = checked(build_payload(slack_event(lead(fields)), LINK))
    assert len(payload["blocks"]) == BLOCK_LIMIT
    last_fields = [b for b in payload["blocks"] if "fields" in b][-1]["fields"]
    assert "more fields" in last_fields[-1]["text"] and CUT_MARKER in last_fields[-1]["text"]
    assert "Question 599: answer 599" in payload["text"]
    assert payload["blocks"][-1]["type"] == "actions"


def test_a_long_transcript_is_cut_to_the_section_limit():
    the_lead = lead({"name": "Ada"})
    the_lead["transcript"] = [message(i, f"line {i} " + "y" * 80) for i in range(60)]
    payload = checked(build_payload(slack_event(the_lead), LINK))
    section = payload["blocks"][2]["text"]["text"]
    assert len(section) <= SECTION_LIMIT
    assert section.endswith(CUT_MARKER + "```")
    assert "line 59" in payload["text"]  # under readable_transcript's own cap


def test_without_a_transcript_there_is_no_conversation_section():
    the_lead = lead({"name": "Ada"})
    the_lead["transcript"] = []
    payload = checked(build_payload(slack_event(the_lead), LINK))
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "context", "actions"]


def test_a_link_too_long_for_a_button_is_left_in_text_only():
    link = "https://chat.acme.example/admin/live?session=" + "a" * 3000
    payload = checked(build_payload(slack_event(), link))
    assert all(b["type"] != "actions" for b in payload["blocks"])
    assert link in payload["text"]


def test_the_fake_refuses_what_slack_refuses():
    good = build_payload(slack_event(), LINK)
    assert FakeSlack.check(good) == []
    bad = {
        "text": "a <b>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11},
            {"type": "section", "text": {"type": "mrkdwn", "text": "Tom & Jerry"}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "b" * 76},
                        "url": "u" * 3001,
                    }
                ],
            },
            {"type": "table"},
        ],
    }
    problems = FakeSlack.check(bad)
    assert len(problems) == 7, problems
    assert len(FakeSlack.check({"blocks": [{"type": "divider"}] * 51})) == 1


def test_destination_requires_a_url():
    with pytest.raises(FieldProblem) as caught:
        formats.destination({"format": "slack"})
    assert caught.value.field == "url"


# --- against the fake ---------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def ctx(http: httpx.AsyncClient) -> Context:
    return Context(http, public_url="https://chat.acme.example/")


async def test_delivered_on_200_ok(slack: FakeSlack, http: httpx.AsyncClient):
    result = await dispatch(ctx(http), slack_event(url=slack.hook_url))
    assert (result.ok, result.status_code, result.response_snippet) == (True, 200, "ok")
    assert slack.problems == []
    (posted,) = slack.messages
    assert posted["blocks"][-1]["elements"][0]["url"] == LINK
    (request,) = slack.requests("POST")
    assert request.headers["content-type"] == "application/json"


async def test_invalid_blocks_is_a_dead_letter(slack: FakeSlack, http: httpx.AsyncClient):
    slack.fail_next(400, "invalid_blocks")
    result = await send(ctx(http), slack_event(url=slack.hook_url))
    assert (result.ok, result.retryable, result.error) == (False, False, "HTTP 400: invalid_blocks")


async def test_server_error_is_retried(slack: FakeSlack, http: httpx.AsyncClient):
    slack.fail_next(500, "rollup_error")
    event = slack_event(url=slack.hook_url)
    result = await send(ctx(http), event)
    assert (result.ok, result.retryable, result.status_code) == (False, True, 500)
    assert (await send(ctx(http), event)).ok  # the retry goes through


@pytest.mark.parametrize(("status", "reason"), [(404, "no_service"), (410, "channel_is_archived")])
async def test_a_revoked_hook_is_a_dead_letter(slack, http, status, reason):
    slack.revoke(status)
    result = await send(ctx(http), slack_event(url=slack.hook_url))
    assert (result.ok, result.retryable, result.error) == (False, False, f"HTTP {status}: {reason}")


async def test_a_wrong_hook_answers_no_service(slack: FakeSlack, http: httpx.AsyncClient):
    result = await send(ctx(http), slack_event(url=slack.url + "/services/T0/B0/other"))
    assert (result.ok, result.retryable, result.status_code) == (False, False, 404)


async def test_the_webhook_url_never_shows_in_an_error(http: httpx.AsyncClient):
    url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"  # nothing listens there
    result = await send(ctx(http), slack_event(url=url))
    assert (result.ok, result.retryable) == (False, True)
    assert HOOK_PATH not in (result.error or "") and "s3cr3t" not in (result.error or "")


async def test_the_fake_answers_invalid_blocks_for_a_bad_payload(slack, http, monkeypatch):
    from chatlead.formats import slack as module

    monkeypatch.setattr(module, "build_payload", lambda event, link: {"text": "Tom & Jerry <3"})
    result = await send(ctx(http), slack_event(url=slack.hook_url))
    assert (result.ok, result.retryable, result.error) == (False, False, "HTTP 400: invalid_blocks")
    assert slack.problems and slack.messages == []
    monkeypatch.setattr(module, "build_payload", lambda event, link: {})
    result = await send(ctx(http), slack_event(url=slack.hook_url))
    assert result.error == "HTTP 400: no_text"


async def test_any_200_counts_as_delivered(slack: FakeSlack, http: httpx.AsyncClient):
    slack.fail_next(200, "something new")  # Slack documents only "ok"; the body is kept
    result = await send(ctx(http), slack_event(url=slack.hook_url))
    assert (result.ok, result.response_snippet) == (True, "something new")
