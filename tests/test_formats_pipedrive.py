"""Format ``pipedrive``: builders (pure), then delivery to a fake Pipedrive and a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from chatlead.formats import Context, budget
from chatlead.formats import send as dispatch
from chatlead.formats.pipedrive import (
    BUDGET_LIMIT,
    BUDGET_WINDOW,
    PIPEDRIVE_BASE,
    SEARCH_BUDGET_LIMIT,
    build_lead_create,
    build_lead_patch,
    build_note,
    build_open_leads,
    build_person_create,
    build_person_search,
    note_content,
    parse_lead_id,
    parse_open_lead,
    parse_person_id,
    person_body,
    result_of,
    send,
)
from chatlead.sites import FieldProblem
from fakes.leads import event_for, lead, message, site_with
from fakes.pipedrive import FakePipedrive
from pydantic import ValidationError

TOKEN = "pd_0123456789abcdef0123456789abcdef01234567"
LEAD_UUID = "adf21080-0e10-11eb-879b-05d71fb426ec"


def pipedrive_site(url: str | None = None, token: str = TOKEN):
    return site_with(url=url, format="pipedrive", pipedrive_token=token)


def answer(status: int, body=None, headers=None) -> httpx.Response:
    request = httpx.Request("GET", f"{PIPEDRIVE_BASE}/api/v1/leads")
    return httpx.Response(status, json=body, headers=headers, request=request)


# --- pure -----------------------------------------------------------------------


def test_token_is_a_header_and_the_base_defaults_to_pipedrive():
    request = build_person_search(PIPEDRIVE_BASE, TOKEN, "ada+chat@example.com")
    assert request.method == "GET"
    assert request.url == (
        f"{PIPEDRIVE_BASE}/api/v2/persons/search"
        "?term=ada%2Bchat%40example.com&fields=email&exact_match=true"
    )
    assert request.headers == {"x-api-token": TOKEN, "Accept": "application/json"}
    assert TOKEN not in request.url
    post = build_person_create(PIPEDRIVE_BASE, TOKEN, event_for(pipedrive_site(), lead()))
    assert post.headers["Content-Type"] == "application/json"


def test_options_require_the_token_and_nothing_else():
    with pytest.raises(FieldProblem):
        site_with(format="pipedrive")
    with pytest.raises(ValidationError):
        site_with(format="pipedrive", pipedrive_token=TOKEN, pipedrive_domain="acme")


def test_person_body_has_name_email_and_e164_phone():
    the_lead = lead({"name": "Ada Lovelace", "email": "ada@example.com", "phone": "(415) 555-0100"})
    assert person_body(event_for(pipedrive_site(), the_lead)) == {
        "name": "Ada Lovelace",
        "emails": [{"value": "ada@example.com", "primary": True, "label": "work"}],
        "phones": [{"value": "+14155550100", "primary": True, "label": "mobile"}],
    }


def test_person_without_name_or_email_gets_a_fallback_name_only():
    body = person_body(event_for(pipedrive_site(), lead({"phone_number": "+14155550100"})))
    assert body["name"] == "Website visitor 3f9a1c2e"
    assert "emails" not in body and body["phones"][0]["value"] == "+14155550100"


def test_lead_requests():
    create = build_lead_create("https://pd.example", TOKEN, 7, "Ada Lovelace")
    assert (create.method, create.url) == ("POST", "https://pd.example/api/v1/leads")
    assert create.json == {"title": "Ada Lovelace (chat)", "person_id": 7}
    patch = build_lead_patch("https://pd.example", TOKEN, LEAD_UUID, 7)
    assert (patch.method, patch.url) == ("PATCH", f"https://pd.example/api/v1/leads/{LEAD_UUID}")
    assert patch.json == {"person_id": 7}  # no title: a sales person may have renamed it
    listing = build_open_leads("https://pd.example", TOKEN, 7)
    assert listing.url == "https://pd.example/api/v1/leads?person_id=7&archived_status=not_archived"
    note = build_note("https://pd.example", TOKEN, LEAD_UUID, "hi")
    assert (note.url, note.json) == (
        "https://pd.example/api/v1/notes",
        {"content": "hi", "lead_id": LEAD_UUID},
    )


def test_note_content_is_the_transcript_as_escaped_html():
    the_lead = lead()
    the_lead["transcript"].append(message(9, "Is <b>5 & 6</b> ok?\nthanks"))
    lines = note_content(the_lead).split("<br>")
    assert lines[1] == "2026-11-23 14:02 UTC  Visitor: Ada Lovelace"
    assert lines[-2].endswith("Visitor: Is &lt;b&gt;5 &amp; 6&lt;/b&gt; ok?")
    assert lines[-1] == "    thanks"
    assert note_content({"transcript": []}) == ""


def test_parse_answers():
    search = {"success": True, "data": {"items": [{"result_score": 1.2, "item": {"id": 42}}]}}
    assert parse_person_id(search) == 42
    assert parse_person_id({"success": True, "data": {"items": []}}) is None
    assert parse_person_id({"success": True, "data": {"id": 43, "name": "x"}}) == 43
    assert parse_person_id({"data": {"id": True}}) is None
    assert parse_lead_id({"success": True, "data": {"id": LEAD_UUID}}) == LEAD_UUID
    assert parse_lead_id({"data": None}) is None
    assert parse_open_lead({"success": True, "data": [{"id": LEAD_UUID}, {"id": "b"}]}) == LEAD_UUID
    assert parse_open_lead({"success": True, "data": None}) is None


def test_result_classes():
    ok = result_of(answer(201, {"success": True}), LEAD_UUID)
    assert (ok.ok, ok.ref_id) == (True, LEAD_UUID)
    refused = result_of(answer(401, {"success": False, "error": "unauthorized access"}))
    assert (refused.retryable, refused.error) == (
        False,
        "Pipedrive token rejected; check pipedrive_token",
    )
    forbidden = result_of(answer(403, {"success": False, "error": "Scope mismatch"}))
    assert (
        forbidden.error
        == "Pipedrive token rejected; check pipedrive_token (HTTP 403: Scope mismatch)"
    )
    by_retry_after = result_of(answer(429, {}, {"Retry-After": "7", "x-ratelimit-reset": "1"}))
    assert (by_retry_after.retryable, by_retry_after.retry_after) == (True, 7.0)
    assert result_of(answer(429, {}, {"x-ratelimit-reset": "2"})).retry_after == 2.0
    assert result_of(answer(429, {})).retry_after == 2.0
    assert result_of(answer(502, None)).retryable
    bad = result_of(answer(400, {"success": False, "error": "Title is required" + "!" * 400}))
    assert (bad.retryable, bad.status_code) == (False, 400)
    assert bad.error is not None and bad.error.startswith("Pipedrive: HTTP 400 Title is required")
    assert len(bad.error) == 300
    leaky = result_of(answer(401, {"error": f"token {TOKEN} unknown"})).redacted(TOKEN)
    assert TOKEN not in (leaky.error or "") + leaky.response_snippet


# --- against the fake Pipedrive ----------------------------------------------------


@pytest.fixture
def pipedrive() -> Iterator[FakePipedrive]:
    with FakePipedrive(TOKEN) as fake:
        yield fake
        # Whatever the test did: the token only ever travelled in the header.
        assert fake.query_tokens == []
        assert all(TOKEN not in r.path and TOKEN not in str(r.query) for r in fake.seen)


def calls(fake: FakePipedrive) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.seen]


async def test_new_visitor_gets_person_lead_and_note(pipedrive, http):
    the_lead = lead({"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+14155550100"})
    result = await send(Context(http), event_for(pipedrive_site(pipedrive.base), the_lead))
    assert result.ok and result.ref_id is not None
    assert str(uuid.UUID(result.ref_id)) == result.ref_id
    assert calls(pipedrive) == [
        "GET /api/v2/persons/search",
        "POST /api/v2/persons",
        "GET /api/v1/leads",
        "POST /api/v1/leads",
        "POST /api/v1/notes",
    ]
    assert pipedrive.seen[0].query == {
        "term": "ada@example.com",
        "fields": "email",
        "exact_match": "true",
    }
    assert all(r.headers["x-api-token"] == TOKEN for r in pipedrive.seen)
    [person] = pipedrive.persons.values()
    assert person["name"] == "Ada Lovelace"
    assert person["emails"] == [{"value": "ada@example.com", "primary": True, "label": "work"}]
    assert person["phones"] == [{"value": "+14155550100", "primary": True, "label": "mobile"}]
    record = pipedrive.leads[result.ref_id]
    assert (record["title"], record["person_id"]) == ("Ada Lovelace (chat)", person["id"])
    [note] = pipedrive.notes_of(result.ref_id)
    assert "Visitor: ada@example.com" in note["content"]


async def test_known_person_with_an_open_lead_updates_that_lead(pipedrive, http):
    person = pipedrive.add_person("Ada L.", "ADA@example.com")
    open_lead = pipedrive.add_lead(person, "Website enquiry")
    result = await send(Context(http), event_for(pipedrive_site(pipedrive.base), lead()))
    assert result.ok and result.ref_id == open_lead
    assert calls(pipedrive) == [
        "GET /api/v2/persons/search",
        "GET /api/v1/leads",
        f"PATCH /api/v1/leads/{open_lead}",
        "POST /api/v1/notes",
    ]
    assert pipedrive.seen[1].query == {"person_id": str(person), "archived_status": "not_archived"}
    assert len(pipedrive.leads) == 1 and len(pipedrive.persons) == 1
    assert pipedrive.leads[open_lead]["title"] == "Website enquiry"  # the sales person's title
    assert len(pipedrive.notes_of(open_lead)) == 1


async def test_archived_lead_is_not_reused(pipedrive, http):
    person = pipedrive.add_person("Ada Lovelace", "ada@example.com")
    archived = pipedrive.add_lead(person, "Old enquiry", archived=True)
    result = await send(Context(http), event_for(pipedrive_site(pipedrive.base), lead()))
    assert result.ok and result.ref_id not in (None, archived)
    assert pipedrive.leads[result.ref_id]["person_id"] == person
    assert pipedrive.leads[archived]["is_archived"] is True
    assert pipedrive.notes_of(archived) == []


async def test_known_ref_id_patches_that_lead(pipedrive, http):
    site = pipedrive_site(pipedrive.base)
    first = await send(Context(http), event_for(site, lead({"phone": "+14155550100"})))
    assert first.ok and first.ref_id
    pipedrive.seen.clear()
    completed = lead({"name": "Ada Lovelace", "email": "ada@example.com"}, ref_id=first.ref_id)
    second = await send(Context(http), event_for(site, completed, "evt_2"))
    assert second.ok and second.ref_id == first.ref_id
    assert calls(pipedrive) == [
        "GET /api/v2/persons/search",
        "POST /api/v2/persons",
        f"PATCH /api/v1/leads/{first.ref_id}",
        "POST /api/v1/notes",
    ]
    assert pipedrive.seen[2].json == {"person_id": max(pipedrive.persons)}
    assert len(pipedrive.leads) == 1
    assert pipedrive.leads[first.ref_id]["title"] == "Website visitor 3f9a1c2e (chat)"
    assert len(pipedrive.notes_of(first.ref_id)) == 2


async def test_deleted_lead_falls_back_to_lookup_once(pipedrive, http):
    site = pipedrive_site(pipedrive.base)
    first = await send(Context(http), event_for(site, lead()))
    pipedrive.delete_lead(first.ref_id)
    pipedrive.seen.clear()
    again = await send(Context(http), event_for(site, lead(ref_id=first.ref_id), "evt_2"))
    assert again.ok and again.ref_id not in (None, first.ref_id)
    assert calls(pipedrive) == [
        "GET /api/v2/persons/search",
        f"PATCH /api/v1/leads/{first.ref_id}",
        "GET /api/v1/leads",
        "POST /api/v1/leads",
        "POST /api/v1/notes",
    ]
    assert list(pipedrive.leads) == [again.ref_id]


async def test_no_email_creates_the_person_without_searching(pipedrive, http):
    the_lead = lead({"phone": "+14155550100"})
    result = await send(Context(http), event_for(pipedrive_site(pipedrive.base), the_lead))
    assert result.ok
    assert calls(pipedrive)[0] == "POST /api/v2/persons"
    assert "GET /api/v2/persons/search" not in calls(pipedrive)
    [person] = pipedrive.persons.values()
    assert person["name"] == "Website visitor 3f9a1c2e" and person["emails"] == []


async def test_the_token_never_appears_in_a_url(pipedrive, http):
    site = pipedrive_site(pipedrive.base)
    first = await send(Context(http), event_for(site, lead()))
    await send(Context(http), event_for(site, lead(ref_id=first.ref_id), "evt_2"))
    await send(Context(http), event_for(site, lead({"phone": "+14155550100"}), "evt_3"))
    assert len(pipedrive.seen) >= 12
    for seen in pipedrive.seen:
        assert "api_token" not in seen.query
        assert TOKEN not in seen.path + "?" + "&".join(f"{k}={v}" for k, v in seen.query.items())
        assert seen.headers["x-api-token"] == TOKEN


async def test_fake_refuses_a_token_in_the_query_string(pipedrive, http):
    response = await http.get(f"{pipedrive.base}/api/v1/leads", params={"api_token": TOKEN})
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "data": None,
    }
    assert pipedrive.query_tokens == [TOKEN]
    pipedrive.query_tokens.clear()  # recorded; the fixture checks send() never does it
    pipedrive.seen.clear()


async def test_wrong_token_is_dead_lettered_without_leaking_it(pipedrive, http):
    wrong = "pd_wrong_token_fedcba9876543210"
    site = pipedrive_site(pipedrive.base, token=wrong)
    result = await send(Context(http), event_for(site, lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert result.error == "Pipedrive token rejected; check pipedrive_token"
    assert wrong not in (result.error or "") + result.response_snippet
    assert len(pipedrive.seen) == 1 and pipedrive.persons == {}


async def test_429_honours_x_ratelimit_reset(pipedrive, http):
    pipedrive.fail_with_429(1, reset=3)
    site = pipedrive_site(pipedrive.base)
    result = await send(Context(http), event_for(site, lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, True, 429)
    assert result.retry_after == 3.0
    assert pipedrive.persons == {} and pipedrive.leads == {}
    assert (await send(Context(http), event_for(site, lead()))).ok


async def test_429_prefers_retry_after(pipedrive, http):
    pipedrive.fail_with_429(1, reset=1, retry_after=5)
    result = await send(Context(http), event_for(pipedrive_site(pipedrive.base), lead()))
    assert (result.retryable, result.retry_after) == (True, 5.0)


async def test_server_error_is_retried(pipedrive, http):
    pipedrive.fail_notes(1, status=500)
    result = await send(Context(http), event_for(pipedrive_site(pipedrive.base), lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, True, 500)


async def test_failed_note_keeps_the_lead_id_so_the_retry_patches_it(pipedrive, http):
    site = pipedrive_site(pipedrive.base)
    pipedrive.fail_notes(1)
    failed = await send(Context(http), event_for(site, lead()))
    assert (failed.ok, failed.retryable, failed.status_code) == (False, True, 503)
    [created] = pipedrive.leads
    assert failed.ref_id == created
    assert pipedrive.notes == []
    # The outbox stores ref_id with the failed attempt and hands it back on retry.
    retried = await send(Context(http), event_for(site, lead(ref_id=failed.ref_id)))
    assert retried.ok and retried.ref_id == created
    assert list(pipedrive.leads) == [created]
    assert len(pipedrive.notes_of(created)) == 1
    assert calls(pipedrive)[-2] == f"PATCH /api/v1/leads/{created}"


async def test_budget_holds_back_requests_over_the_limit(pipedrive, http, redis):
    key = budget.key("pipedrive", TOKEN)
    for _ in range(BUDGET_LIMIT - 1):
        assert await budget.take(redis, key, limit=BUDGET_LIMIT, window=BUDGET_WINDOW) is None
    result = await send(Context(http, redis), event_for(pipedrive_site(pipedrive.base), lead()))
    assert (result.ok, result.retryable, result.sent, result.status_code) == (
        False,
        True,
        False,
        None,
    )
    assert "budget" in (result.error or "")
    assert result.retry_after is not None and 1 <= result.retry_after <= BUDGET_WINDOW
    assert calls(pipedrive) == ["GET /api/v2/persons/search"]  # the 21st never left
    assert await redis.zcard(key) == BUDGET_LIMIT


async def test_search_budget_is_smaller(pipedrive, http, redis):
    key = budget.key("pipedrive-search", TOKEN)
    for _ in range(SEARCH_BUDGET_LIMIT):
        await budget.take(redis, key, limit=SEARCH_BUDGET_LIMIT, window=BUDGET_WINDOW)
    result = await send(Context(http, redis), event_for(pipedrive_site(pipedrive.base), lead()))
    assert (result.sent, result.retryable) == (False, True)
    assert pipedrive.seen == []


async def test_budget_held_after_the_lead_keeps_its_id(pipedrive, http, redis):
    key = budget.key("pipedrive", TOKEN)
    for _ in range(BUDGET_LIMIT - 4):  # room for search, person, list and lead; not the note
        await budget.take(redis, key, limit=BUDGET_LIMIT, window=BUDGET_WINDOW)
    result = await send(Context(http, redis), event_for(pipedrive_site(pipedrive.base), lead()))
    assert (result.sent, result.retryable) == (False, True)
    [created] = pipedrive.leads
    assert result.ref_id == created and pipedrive.notes == []


async def test_dispatcher_routes_pipedrive_and_counts_every_call(pipedrive, http, redis):
    result = await dispatch(Context(http, redis), event_for(pipedrive_site(pipedrive.base), lead()))
    assert result.ok
    assert await redis.zcard(budget.key("pipedrive", TOKEN)) == 5
    assert await redis.zcard(budget.key("pipedrive-search", TOKEN)) == 1


async def test_without_budget_pipedrive_itself_refuses(http):
    with FakePipedrive(TOKEN, per_window=3) as strict:
        result = await send(Context(http), event_for(pipedrive_site(strict.base), lead()))
    assert (result.retryable, result.status_code) == (True, 429)
    assert result.retry_after is not None and 1 <= result.retry_after <= 2
    assert len(strict.leads) == 0 and len(strict.persons) == 1


async def test_failure_after_a_deleted_lead_does_not_keep_its_id(pipedrive, http, redis):
    site = pipedrive_site(pipedrive.base)
    first = await send(Context(http), event_for(site, lead()))
    pipedrive.delete_lead(first.ref_id)
    pipedrive.fail_notes(1)
    again = await send(Context(http), event_for(site, lead(ref_id=first.ref_id), "evt_2"))
    assert again.retryable and again.ref_id not in (None, first.ref_id)  # the new lead's
    assert list(pipedrive.leads) == [again.ref_id]
    # Held back after the 404 but before a lead exists: no id to keep at all.
    pipedrive.delete_lead(again.ref_id)
    key = budget.key("pipedrive", TOKEN)
    for _ in range(BUDGET_LIMIT - 2):  # room for the search and the PATCH only
        await budget.take(redis, key, limit=BUDGET_LIMIT, window=BUDGET_WINDOW)
    held = await send(Context(http, redis), event_for(site, lead(ref_id=again.ref_id), "evt_3"))
    assert (held.sent, held.ref_id) == (False, None)
    assert calls(pipedrive)[-1] == f"PATCH /api/v1/leads/{again.ref_id}"


async def test_empty_transcript_writes_no_note(pipedrive, http):
    the_lead = lead()
    the_lead["transcript"] = []
    result = await send(Context(http), event_for(pipedrive_site(pipedrive.base), the_lead))
    assert result.ok and result.ref_id in pipedrive.leads
    assert "POST /api/v1/notes" not in calls(pipedrive)
