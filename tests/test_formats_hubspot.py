"""Format ``hubspot``: builders (pure), then delivery to a fake HubSpot and a real Redis,
then once through the running app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chatlead import formats
from chatlead.formats import Context, budget
from chatlead.formats import send as dispatch
from chatlead.formats.hubspot import (
    BUDGET_LIMIT,
    BUDGET_WINDOW,
    HUBSPOT_BASE,
    TOKEN_REJECTED,
    build_create,
    build_note,
    build_search,
    build_update,
    contact_properties,
    existing_id,
    failure_of,
    note_body,
    parse_id,
    parse_search,
    send,
)
from chatlead.formats.transcript_text import TRUNCATED_MARKER
from chatlead.sites import FieldProblem
from fakes import Answer, Seen
from fakes.hubspot import FakeHubSpot
from fakes.leads import event_for, lead, message, site_with
from pydantic import ValidationError

from tests.conftest import Visitor, wait_for

TOKEN = "pat-na1-0123abcd-4567-89ef-aaaa-bbbbccccdddd"
CONTACTS = "/crm/v3/objects/contacts"
NOTES = "/crm/v3/objects/notes"


def hubspot_site(url: str | None = None, token: str = TOKEN):
    return site_with(url=url, format="hubspot", hubspot_token=token)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", f"{HUBSPOT_BASE}{CONTACTS}")
    return httpx.Response(status, json=body, headers=headers, request=request)


# --- pure -----------------------------------------------------------------------


def test_bearer_token_and_default_base():
    request = build_create(event_for(hubspot_site(), lead()))
    assert (request.method, request.url) == ("POST", f"{HUBSPOT_BASE}{CONTACTS}")
    assert request.headers == {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
    }


def test_created_contact_properties():
    the_lead = lead(
        {
            "name": "Ada King Lovelace",
            "email": "ada@example.com",
            "phone_number": "(415) 555-0100",
            "company": "Analytical Engines",
        }
    )
    request = build_create(event_for(hubspot_site("https://hs.example/"), the_lead))
    assert request.url == f"https://hs.example{CONTACTS}"
    assert request.json == {
        "properties": {
            "email": "ada@example.com",
            "firstname": "Ada",
            "lastname": "King Lovelace",
            "phone": "+14155550100",
            "company": "Analytical Engines",  # the visitor's, never the site's company
            "lifecyclestage": "lead",
            "hs_lead_status": "NEW",
        }
    }


def test_absent_fields_are_left_out():
    props = contact_properties(event_for(hubspot_site(), lead({"name": "Cher"})))
    assert props == {"firstname": "Cher", "lifecyclestage": "lead", "hs_lead_status": "NEW"}


def test_update_keeps_stage_and_status_a_salesperson_set():
    request = build_update(event_for(hubspot_site(), lead(ref_id="512")), "512")
    assert (request.method, request.url) == ("PATCH", f"{HUBSPOT_BASE}{CONTACTS}/512")
    assert request.json == {
        "properties": {"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"}
    }


def test_search_by_email_exactly_as_hubspot_documents_it():
    request = build_search(event_for(hubspot_site(), lead()))
    assert request is not None
    assert (request.method, request.url) == ("POST", f"{HUBSPOT_BASE}{CONTACTS}/search")
    assert request.json == {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "ada@example.com"}]}
        ],
        "limit": 1,
    }
    assert build_search(event_for(hubspot_site(), lead({"phone": "+14155550100"}))) is None


def test_note_is_timed_and_associated_with_the_contact():
    request = build_note(event_for(hubspot_site(), lead()), "512")
    assert (request.method, request.url) == ("POST", f"{HUBSPOT_BASE}{NOTES}")
    assert request.json["properties"]["hs_timestamp"] == "2026-11-23T14:05:00.000Z"
    assert request.json["associations"] == [
        {
            "to": {"id": "512"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
        }
    ]


def test_attribution_goes_into_the_note_not_the_contact():
    the_lead = lead(
        {
            "name": "Ada Lovelace",
            "page_url": "https://acme.example/boilers?utm_source=google&utm_campaign=winter",
            "referrer": "https://www.google.com/",
            "utm_source": "google",
            "utm_campaign": "winter",
        }
    )
    event = event_for(hubspot_site(), the_lead)
    assert set(contact_properties(event)) == {
        "firstname",
        "lastname",
        "lifecyclestage",
        "hs_lead_status",
    }
    body = note_body(event)
    lines = body.split("<br>\n")
    assert lines[:5] == [
        "<b>Website chat lead</b>",
        "Page: https://acme.example/boilers?utm_source=google&amp;utm_campaign=winter",
        "Referrer: https://www.google.com/",
        "UTM source: google",
        "UTM campaign: winter",
    ]
    assert lines[5] == ""
    assert lines[6] == "2026-11-23 14:01 UTC  Bot: What&#x27;s your name?"


def test_note_body_is_escaped_html_with_line_breaks():
    the_lead = lead(abandoned=True)
    the_lead["transcript"].append(message(9, "<script>alert('x')</script>\nsecond & last"))
    body = note_body(event_for(hubspot_site(), the_lead))
    assert body.startswith("<b>Website chat lead (abandoned)</b><br>\n")
    assert "<script>" not in body
    assert "Visitor: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;<br>\n" in body
    assert "&nbsp;&nbsp;&nbsp;&nbsp;second &amp; last" in body


def test_note_body_is_cut_to_fit():
    the_lead = lead()
    the_lead["transcript"] = [message(i % 60, '"<&>"' * 40) for i in range(200)]
    event = event_for(hubspot_site(), the_lead)
    assert len(note_body(event)) <= 65_536
    short = note_body(event, limit=2_000)
    assert len(short) <= 2_000 and short.endswith(TRUNCATED_MARKER)


def test_parsers():
    assert parse_id({"id": "512", "properties": {}}) == "512"
    assert parse_id({"id": 512}) == "512"
    assert parse_id({"id": True}) is None and parse_id([]) is None
    assert parse_search({"total": 1, "results": [{"id": "77"}]}) == "77"
    assert parse_search({"total": 0, "results": []}) is None
    assert parse_search(None) is None
    conflict = {"status": "error", "message": "Contact already exists. Existing ID: 123"}
    assert existing_id({**conflict, "category": "CONFLICT"}) == "123"
    assert existing_id({"message": "something else"}) is None
    assert existing_id("Existing ID: 5") is None


def test_failures_are_classified():
    rejected = failure_of(answer(401, {"status": "error", "category": "INVALID_AUTHENTICATION"}))
    assert (rejected.ok, rejected.retryable, rejected.error) == (False, False, TOKEN_REJECTED)
    assert failure_of(answer(403, {"category": "MISSING_SCOPES"})).retryable is False
    limited = failure_of(answer(429, {"errorType": "RATE_LIMIT"}, {"Retry-After": "3"}))
    assert (limited.retryable, limited.retry_after) == (True, 3.0)
    assert failure_of(answer(429, {})).retry_after == 10.0
    assert failure_of(answer(502, None)).retryable is True
    invalid = failure_of(
        answer(400, {"category": "VALIDATION_ERROR", "message": "Property x" + "y" * 500})
    )
    assert invalid.retryable is False
    assert invalid.error is not None and invalid.error.startswith(
        "HubSpot: HTTP 400 VALIDATION_ERROR: Property x"
    )
    assert len(invalid.error) == 300


def test_destination_needs_a_token_and_no_other_keys():
    with pytest.raises(FieldProblem) as missing:
        formats.destination({"format": "hubspot"})
    assert missing.value.field == "hubspot_token"
    with pytest.raises(ValidationError):
        formats.destination({"format": "hubspot", "hubspot_token": TOKEN, "hubspot_key": "x"})
    made = formats.destination({"format": "hubspot", "hubspot_token": TOKEN})
    assert formats.get("hubspot").target_of(made) == HUBSPOT_BASE


# --- against the fake HubSpot -------------------------------------------------------


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(TOKEN) as fake:
        yield fake


def calls(fake: FakeHubSpot) -> list[str]:
    return [f"{r.method} {r.path.removeprefix('/crm/v3/objects/')}" for r in fake.seen]


async def test_new_lead_is_created_with_its_transcript_note(hubspot, http):
    result = await send(Context(http), event_for(hubspot_site(hubspot.url), lead()))
    assert result.ok and result.ref_id is not None
    assert calls(hubspot) == ["POST contacts/search", "POST contacts", "POST notes"]
    contact = hubspot.contacts[result.ref_id]
    assert contact["email"] == "ada@example.com"
    assert (contact["lifecyclestage"], contact["hs_lead_status"]) == ("lead", "NEW")
    [note] = hubspot.notes_of(result.ref_id)
    assert "Visitor: Ada Lovelace" in note["properties"]["hs_note_body"]


async def test_search_hit_is_updated_and_keeps_its_stage(hubspot, http):
    known = hubspot.add_contact(
        {"email": "ADA@example.com", "lifecyclestage": "customer", "hs_lead_status": "CONNECTED"}
    )
    result = await send(Context(http), event_for(hubspot_site(hubspot.url), lead()))
    assert result.ok and result.ref_id == known
    assert calls(hubspot) == ["POST contacts/search", f"PATCH contacts/{known}", "POST notes"]
    contact = hubspot.contacts[known]
    assert (contact["firstname"], contact["lastname"]) == ("Ada", "Lovelace")
    assert (contact["lifecyclestage"], contact["hs_lead_status"]) == ("customer", "CONNECTED")
    assert len(hubspot.contacts) == 1


async def test_known_ref_id_is_patched_without_a_search(hubspot, http):
    site = hubspot_site(hubspot.url)
    first = await send(
        Context(http), event_for(site, lead({"phone": "+14155550100"}, abandoned=True))
    )
    assert first.ok and first.ref_id
    assert calls(hubspot) == ["POST contacts", "POST notes"]  # no email: nothing to search
    completed = lead(
        {"phone": "+14155550100", "name": "Ada Lovelace", "email": "ada@example.com"},
        ref_id=first.ref_id,
    )
    second = await send(Context(http), event_for(site, completed, "evt_2"))
    assert second.ok and second.ref_id == first.ref_id
    assert calls(hubspot)[2:] == [f"PATCH contacts/{first.ref_id}", "POST notes"]
    assert hubspot.requests("PATCH")[0].json == {
        "properties": {"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"}
        | {"phone": "+14155550100"}
    }
    assert len(hubspot.contacts) == 1
    assert len(hubspot.notes_of(first.ref_id)) == 2


async def test_deleted_contact_is_written_afresh_once(hubspot, http):
    site = hubspot_site(hubspot.url)
    first = await send(Context(http), event_for(site, lead()))
    hubspot.delete(first.ref_id)
    again = await send(Context(http), event_for(site, lead(ref_id=first.ref_id), "evt_2"))
    assert again.ok and again.ref_id not in (None, first.ref_id)
    assert calls(hubspot)[3:] == [
        f"PATCH contacts/{first.ref_id}",
        "POST contacts/search",
        "POST contacts",
        "POST notes",
    ]
    assert hubspot.contacts[again.ref_id]["lifecyclestage"] == "lead"


async def test_conflict_on_create_patches_the_existing_contact(hubspot, http):
    # Created a moment ago (by the abandoned event on another worker): not searchable yet.
    existing = hubspot.add_contact({"email": "ada@example.com"}, searchable=False)
    result = await send(Context(http), event_for(hubspot_site(hubspot.url), lead()))
    assert result.ok and result.ref_id == existing
    assert calls(hubspot) == [
        "POST contacts/search",
        "POST contacts",
        f"PATCH contacts/{existing}",
        "POST notes",
    ]
    assert len(hubspot.contacts) == 1
    assert hubspot.contacts[existing]["firstname"] == "Ada"
    assert len(hubspot.notes_of(existing)) == 1


async def test_a_returning_email_owned_by_another_contact_keeps_our_contact(hubspot, http):
    ours = hubspot.add_contact({"email": "first@example.com", "firstname": "Ada"})
    hubspot.add_contact({"email": "ada@example.com"})  # someone else's in HubSpot
    event = event_for(hubspot_site(hubspot.url), lead(ref_id=ours))
    result = await send(Context(http), event)
    assert result.ok and result.ref_id == ours
    assert calls(hubspot) == [f"PATCH contacts/{ours}"] * 2 + ["POST notes"]
    assert hubspot.contacts[ours]["email"] == "first@example.com"  # not taken from the other
    assert len(hubspot.notes_of(ours)) == 1  # the transcript still reaches our contact


async def test_visitor_markup_arrives_escaped_in_the_note(hubspot, http):
    the_lead = lead()
    the_lead["transcript"].append(message(9, "<script>alert(1)</script> & <b>hi</b>"))
    result = await send(Context(http), event_for(hubspot_site(hubspot.url), the_lead))
    [note] = hubspot.notes_of(result.ref_id)
    body = note["properties"]["hs_note_body"]
    assert "<script>" not in body and "<b>hi</b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;hi&lt;/b&gt;" in body


async def test_rejected_token_is_a_dead_letter_that_never_shows_it(hubspot, http):
    wrong = "pat-na1-ffffffff-wrong-token"
    result = await send(Context(http), event_for(hubspot_site(hubspot.url, wrong), lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert result.error == TOKEN_REJECTED
    assert "Authentication credentials not found" in result.response_snippet
    assert wrong not in (result.error or "") + result.response_snippet
    assert len(hubspot.seen) == 1 and hubspot.contacts == {}


async def test_a_token_echoed_back_is_masked(http):
    class Echoing(FakeHubSpot):
        def handle(self, request: Seen) -> Answer:
            echoed = f"bad credentials: {request.headers.get('authorization')}"
            return Answer(401, {"status": "error", "message": echoed})

    with Echoing(TOKEN) as fake:
        result = await send(Context(http), event_for(hubspot_site(fake.url), lead()))
    assert result.error == TOKEN_REJECTED
    assert TOKEN not in result.response_snippet and "***" in result.response_snippet


async def test_429_is_retried_after_the_retry_after_hubspot_named(hubspot, http):
    hubspot.fail_with_429(1, retry_after="7")
    site = hubspot_site(hubspot.url)
    result = await send(Context(http), event_for(site, lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, True, 429)
    assert result.retry_after == 7.0
    assert hubspot.contacts == {}
    retried = await send(Context(http), event_for(site, lead()))
    assert retried.ok


async def test_failed_note_keeps_the_contact_id_for_the_retry(hubspot, http):
    site = hubspot_site(hubspot.url)
    hubspot.fail_notes(1, status=503)
    failed = await send(Context(http), event_for(site, lead()))
    assert (failed.ok, failed.retryable, failed.status_code) == (False, True, 503)
    assert failed.error is not None and failed.error.startswith("HubSpot note: HTTP 503")
    assert failed.ref_id is not None and failed.ref_id in hubspot.contacts
    # The outbox keeps the id: the retry patches that contact, no search, no duplicate.
    retried = await send(Context(http), event_for(site, lead(ref_id=failed.ref_id)))
    assert retried.ok and retried.ref_id == failed.ref_id
    assert calls(hubspot)[3:] == [f"PATCH contacts/{failed.ref_id}", "POST notes"]
    assert len(hubspot.contacts) == 1 and len(hubspot.notes_of(failed.ref_id)) == 1


async def test_invalid_note_is_a_dead_letter_that_keeps_the_contact_id(hubspot, http):
    hubspot.fail_notes(1, status=400)
    result = await send(Context(http), event_for(hubspot_site(hubspot.url), lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, False, 400)
    assert result.ref_id in hubspot.contacts


async def test_transport_error_after_the_contact_keeps_its_id():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == NOTES:
            raise httpx.ConnectError("connection reset", request=request)
        return httpx.Response(201, json={"id": "901", "properties": {}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        event = event_for(hubspot_site(), lead({"name": "Ada"}))
        result = await send(Context(client), event)
    assert (result.ok, result.retryable, result.ref_id) == (False, True, "901")
    assert result.error == "HubSpot note: ConnectError: connection reset"


async def send_many(http, site, count, redis=None, start=0):
    results = []
    for i in range(start, start + count):
        the_lead = lead({"name": f"Visitor {i}", "phone": f"+1415555{i:04d}"})
        results.append(await send(Context(http, redis), event_for(site, the_lead, f"evt_{i}")))
    return results


async def test_without_budget_hubspot_itself_refuses_the_101st_request(hubspot, http):
    # Two requests per lead without email (contact, note): 50 leads are 100 requests.
    results = await send_many(http, hubspot_site(hubspot.url), 51)
    assert all(r.ok for r in results[:50])
    over = results[50]
    assert (over.ok, over.retryable, over.status_code) == (False, True, 429)
    assert over.retry_after is not None and 1 <= over.retry_after <= 10
    assert "RATE_LIMIT" in over.response_snippet


async def test_budget_stops_the_91st_request_in_10_s(hubspot, http, redis):
    site = hubspot_site(hubspot.url)
    started = time.monotonic()
    results = await send_many(http, site, BUDGET_LIMIT // 2, redis)
    assert all(r.ok for r in results)
    assert time.monotonic() - started < BUDGET_WINDOW - 1  # all inside one window
    over = await send(Context(http, redis), event_for(site, lead({"name": "One more"}), "evt_x"))
    assert (over.ok, over.retryable, over.status_code, over.sent) == (False, True, None, False)
    assert over.retry_after is not None and 1 <= over.retry_after <= BUDGET_WINDOW
    assert over.error == f"HubSpot request budget ({BUDGET_LIMIT}/10 s) used up; not sent"
    assert len(hubspot.seen) == BUDGET_LIMIT  # the 91st never reached HubSpot
    assert await redis.zcard(budget.key("hubspot", TOKEN)) == BUDGET_LIMIT


async def test_budget_used_up_part_way_is_an_attempt_that_keeps_the_id(hubspot, http, redis):
    key = budget.key("hubspot", TOKEN)
    for _ in range(BUDGET_LIMIT - 1):
        assert await budget.take(redis, key, limit=BUDGET_LIMIT, window=BUDGET_WINDOW) is None
    site = hubspot_site(hubspot.url)
    result = await send(Context(http, redis), event_for(site, lead({"name": "Ada"})))
    assert (result.ok, result.retryable, result.sent) == (False, True, True)
    assert result.ref_id is not None and result.ref_id in hubspot.contacts
    assert calls(hubspot) == ["POST contacts"]  # the note waits for the retry


async def test_dispatcher_routes_hubspot_and_counts_every_request(hubspot, http, redis):
    result = await dispatch(Context(http, redis), event_for(hubspot_site(hubspot.url), lead()))
    assert result.ok
    assert await redis.zcard(budget.key("hubspot", TOKEN)) == 3
    assert await redis.zcard(budget.key("hubspot-search", TOKEN)) == 1


async def test_searches_stay_under_hubspots_per_second_limit(http, redis):
    with FakeHubSpot(TOKEN, searches_per_second=4) as strict:
        site = hubspot_site(strict.url)
        results = [
            await send(Context(http, redis), event_for(site, lead(), f"evt_{i}")) for i in range(5)
        ]
    assert all(r.ok for r in results[:4])
    assert (results[4].sent, results[4].retry_after) == (False, 1.0)
    assert len(strict.seen) == 4 * 3  # search, write, note; the 5th search was held back


async def test_the_fake_refuses_what_hubspot_documents_as_refused(hubspot, http):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    base = hubspot.url + CONTACTS

    async def post(url, body, headers=auth):
        return await http.post(url, json=body, headers=headers)

    assert (await post(base, {"properties": {}}, {})).json()["category"] == (
        "INVALID_AUTHENTICATION"
    )
    plain = await http.post(base, content=b"{}", headers={**auth, "Content-Type": "text/plain"})
    assert plain.status_code == 415
    read_only = await post(base, {"properties": {"hs_analytics_source": "ORGANIC_SEARCH"}})
    assert (read_only.status_code, read_only.json()["category"]) == (400, "READ_ONLY_VALUE")
    assert (await post(base, {"properties": {"utm_source": "x"}})).status_code == 400
    assert (await post(base, {"properties": {"lifecyclestage": "Lead"}})).status_code == 400
    assert (await post(base + "/search", {"filterGroups": [{}], "limit": 1})).status_code == 400
    gone = await http.patch(base + "/999", json={"properties": {}}, headers=auth)
    assert (gone.status_code, gone.json()["category"]) == (404, "OBJECT_NOT_FOUND")
    made = (await post(base, {"properties": {"email": "a@example.com"}})).json()["id"]
    twin = await post(base, {"properties": {"email": "A@example.com"}})
    assert (twin.status_code, twin.json()["message"]) == (
        409,
        f"Contact already exists. Existing ID: {made}",
    )
    notes = hubspot.url + NOTES
    kind = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}
    untimed = {"properties": {"hs_note_body": "x"}}
    assert (await post(notes, untimed)).status_code == 400
    timed = {"properties": {"hs_timestamp": "2026-11-23T14:05:00.000Z"}}
    wrong_type = {
        **timed,
        "associations": [{"to": {"id": made}, "types": [{**kind, "associationTypeId": 1}]}],
    }
    assert (await post(notes, wrong_type)).status_code == 400
    nobody = {**timed, "associations": [{"to": {"id": "999"}, "types": [kind]}]}
    assert (await post(notes, nobody)).status_code == 400
    fine = {**timed, "associations": [{"to": {"id": made}, "types": [kind]}]}
    assert (await post(notes, fine)).status_code == 201


# --- end to end -------------------------------------------------------------------


async def test_abandoned_then_completed_chat_is_one_contact_with_two_notes(
    app_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hubspot: FakeHubSpot
) -> None:
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    config = tmp_path / "sites.toml"
    config.write_text(
        f"""
[sites.acme]
idle_timeout = "1s"

[[sites.acme.destinations]]
name = "crm"
format = "hubspot"
url = "{hubspot.url}"
hubspot_token = "env:HUBSPOT_TOKEN"
allow_private = true
"""
    )
    app = await app_factory(config=config)
    page = {"url": "https://acme.example/boilers?utm_source=google", "referrer": "https://g.co/"}
    async with Visitor.connect(app.ws_url, site="acme", page=page) as v:
        await v.field("name", "Ada Lovelace")
        await v.field("email", "ada@example.com")
        await v.expect("lead", timeout=5)  # abandoned
        await wait_for(lambda: hubspot.requests("POST", NOTES), 5)
        await v.field("phone", "+1 202 555 0143", frame_id="back-1")
        await v.field("message", "Boiler <leaking>", frame_id="back-2")
        assert (await v.expect("lead"))["status"] == "completed"
    await wait_for(lambda: len(hubspot.requests("POST", NOTES)) == 2, 5)
    [(contact_id, contact)] = hubspot.contacts.items()
    assert contact["phone"] == "+12025550143" and contact["lastname"] == "Lovelace"
    assert [r.method for r in hubspot.seen if r.path.startswith(CONTACTS)] == [
        "POST",  # search: nobody yet
        "POST",  # create
        "PATCH",  # completed: the refId kept from the abandoned delivery
    ]
    notes = [n["properties"]["hs_note_body"] for n in hubspot.notes_of(contact_id)]
    assert "(abandoned)" in notes[0] and "(abandoned)" not in notes[1]
    assert "Page: https://acme.example/boilers?utm_source=google" in notes[1]
    assert "UTM source: google" in notes[1]
    assert "Boiler &lt;leaking&gt;" in notes[1]
