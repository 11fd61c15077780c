"""Format ``salesforce``: builders (pure), then delivery to a fake org and a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chatlead import formats
from chatlead.config import load_settings
from chatlead.errors import ConfigError
from chatlead.formats import Context
from chatlead.formats import send as dispatch
from chatlead.formats.salesforce import (
    DESCRIPTION_LIMIT,
    TOKEN_TTL,
    lead_body,
    lookup_soql,
    result_of,
    send,
    soql_quote,
    split_name,
    token_key,
    token_result,
)
from chatlead.formats.transcript_text import TRUNCATED_MARKER
from chatlead.site_config import load_sites
from chatlead.sites import FieldProblem, Site
from chatlead.targets import check_targets
from fakes import Answer
from fakes.leads import event_for, lead, message, site_with
from fakes.salesforce import QUERY, FakeSalesforce, soql_unquote
from pydantic import ValidationError

CLIENT_ID = "3MVG9fake.consumer.key"
SECRET = "sf-secret-0123456789ABCDEF"
LOGIN = "https://acme.my.salesforce.com"
WRITTEN = {"FirstName", "LastName", "Company", "Email", "Phone", "LeadSource", "Description"}


def sf_site(login: str = LOGIN, *, secret: str = SECRET, **extra: object) -> Site:
    return site_with(
        format="salesforce",
        salesforce_login_url=login,
        salesforce_client_id=CLIENT_ID,
        salesforce_client_secret=secret,
        **extra,
    )


def body_of(the_lead: dict, site: Site | None = None, *, create: bool = True) -> dict:
    return lead_body(event_for(site or sf_site(), the_lead), create=create)


# --- pure -----------------------------------------------------------------------


def test_soql_quote_escapes_backslash_and_quote_and_round_trips():
    value = "o'brien\\@example.com"
    assert soql_quote(value) == "'o\\'brien\\\\@example.com'"
    assert soql_quote('a"b\nc\rd\te\bf\fg') == "'a\\\"b\\nc\\rd\\te\\bf\\fg'"
    for raw in [value, "x' OR Email != '", "\\'", "\\\\'' OR ''='", "plain@example.com"]:
        assert soql_unquote(soql_quote(raw)[1:-1]) == raw


def test_an_injection_attempt_stays_one_literal():
    soql = lookup_soql("x' OR Email != '")
    assert soql == (
        "SELECT Id FROM Lead WHERE Email = 'x\\' OR Email != \\'' AND IsConverted = false LIMIT 1"
    )
    match = QUERY.fullmatch(soql)
    assert match is not None and soql_unquote(match.group(1)) == "x' OR Email != '"


@pytest.mark.parametrize(
    ("fields", "parts"),
    [
        ({"name": "Ada Lovelace"}, ("Ada", "Lovelace")),
        ({"name": "Mary  Ann Smith "}, ("Mary Ann", "Smith")),
        ({"name": "Cher"}, (None, "Cher")),
        ({"first_name": "Grace", "last_name": "Hopper"}, ("Grace", "Hopper")),
        ({"firstName": "Grace"}, ("Grace", None)),
        ({"email": "x@example.com"}, (None, None)),
    ],
)
def test_split_name_last_word_is_the_last_name(fields, parts):
    assert split_name(lead(fields)) == parts


def test_create_body_maps_the_lead_and_never_sends_status():
    body = body_of(
        lead({"name": "Ada Lovelace", "email": "ada@example.com", "phone": "(415) 555-0100"})
    )
    assert body["FirstName"] == "Ada" and body["LastName"] == "Lovelace"
    assert body["Email"] == "ada@example.com" and body["Phone"] == "+14155550100"
    assert body["Company"] == "Acme Plumbing"  # the site's company
    assert body["LeadSource"] == "Web"
    assert body["Description"].splitlines()[1] == "2026-11-23 14:02 UTC  Visitor: Ada Lovelace"
    assert "Status" not in body
    assert set(body) <= WRITTEN


def test_create_falls_back_for_the_required_fields():
    anonymous = lead({"message": "call me"})
    body = body_of(anonymous)
    assert (body["LastName"], body["Company"]) == ("Visitor", "Acme Plumbing")
    assert "FirstName" not in body and "Email" not in body
    bare = Site(id="x", destinations=sf_site().destinations)
    assert body_of(anonymous, bare)["Company"] == "[not provided]"
    own = body_of(lead({"name": "Ada", "company": "Analytical Engines"}))
    assert own["Company"] == "Analytical Engines" and own["LastName"] == "Ada"


def test_update_keeps_what_a_sales_person_typed():
    body = body_of(lead({"phone": "+14155550100"}), create=False)
    assert "LastName" not in body and "Company" not in body and "LeadSource" not in body
    assert body["Phone"] == "+14155550100"
    named = body_of(lead({"name": "Ada Lovelace", "company": "AE Ltd"}), create=False)
    assert (named["LastName"], named["Company"]) == ("Lovelace", "AE Ltd")


def test_lead_source_is_configurable():
    site = sf_site(salesforce_lead_source="Partner Referral")
    assert body_of(lead(), site)["LeadSource"] == "Partner Referral"


def test_description_is_cut_to_32000_characters():
    the_lead = lead()
    the_lead["transcript"] = [message(i % 60, "z" * 900) for i in range(60)]
    description = body_of(the_lead)["Description"]
    assert len(description) <= DESCRIPTION_LIMIT and description.endswith(TRUNCATED_MARKER)
    assert len(description) > 30_000  # the room is used, not the generic 10,000 cap


def test_values_are_cut_to_the_field_lengths():
    long = lead(
        {"name": "A" * 50 + " " + "B" * 90, "company": "C" * 300, "email": "e" * 80 + "@x.io"}
    )
    body = body_of(long)
    assert (len(body["FirstName"]), len(body["LastName"]), len(body["Company"])) == (40, 80, 255)
    assert "Email" not in body  # cannot be cut; it stays in the transcript


def test_options_check_the_login_url_and_name_it_as_the_target():
    with pytest.raises(ValidationError, match="https://"):
        sf_site("acme.my.salesforce.com")
    with pytest.raises(FieldProblem, match="required"):
        site_with(format="salesforce", salesforce_login_url=LOGIN, salesforce_client_id=CLIENT_ID)
    destination = sf_site(LOGIN + "/").destinations[0]
    assert destination.options.salesforce_login_url == LOGIN
    assert formats.get("salesforce").target_of(destination) == LOGIN


def test_start_up_check_covers_the_login_url(tmp_path: Path):
    path = tmp_path / "sites.toml"
    table = (
        "[[sites.a.destinations]]\nname = 'crm'\nformat = 'salesforce'\n"
        f"salesforce_client_id = '{CLIENT_ID}'\nsalesforce_client_secret = '{SECRET}'\n"
    )
    path.write_text(table + "salesforce_login_url = 'http://acme.my.salesforce.com'\n")
    settings = load_settings(config=path)
    with pytest.raises(ConfigError) as info:
        check_targets(settings, load_sites(settings), lambda h, p: ["93.184.215.14"])
    assert "sites.a.destinations.crm.salesforce_login_url: http://" in str(info.value)
    path.write_text(table + f"salesforce_login_url = '{LOGIN}'\n")
    settings = load_settings(config=path)
    assert check_targets(settings, load_sites(settings), lambda h, p: ["93.184.215.14"]) == []


def test_token_key_is_hashed():
    key = token_key(sf_site().destinations[0].options)
    assert key.startswith("chatlead:crm-token:salesforce:") and len(key.rsplit(":", 1)[1]) == 16
    assert CLIENT_ID not in key and SECRET not in key
    assert key != token_key(sf_site(secret="another").destinations[0].options)


def _answer(status: int, body: object = None) -> httpx.Response:
    return httpx.Response(status, json=body) if body is not None else httpx.Response(status)


def test_result_classes():
    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    r = result_of(_answer(403, limit))
    assert (r.ok, r.retryable, r.retry_after) == (False, True, 60.0)
    r = result_of(_answer(400, [{"message": "bad value", "errorCode": "INVALID_EMAIL_ADDRESS"}]))
    assert (r.retryable, r.error) == (False, "Salesforce: INVALID_EMAIL_ADDRESS: bad value")
    assert result_of(_answer(503)).retryable and result_of(_answer(429)).retry_after == 60.0
    assert result_of(_answer(201, {"id": "00Q1", "success": True})).ref_id == "00Q1"
    assert result_of(_answer(204), "00Q2").ref_id == "00Q2"
    bad = token_result(_answer(400, {"error": "invalid_client", "error_description": "nope"}))
    assert (bad.retryable, bad.error) == (
        False,
        "Salesforce rejected the client credentials; check salesforce_client_id "
        "and salesforce_client_secret (invalid_client: nope)",
    )
    assert token_result(_answer(503)).retryable


# --- against the fake org ---------------------------------------------------------


@pytest.fixture
def org() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(CLIENT_ID, SECRET) as fake:
        yield fake


def calls(org: FakeSalesforce) -> list[str]:
    return [f"{r.method} {r.path.removeprefix('/services/data/v60.0')}" for r in org.requests()]


async def test_a_new_lead_is_created(org, http, redis):
    result = await send(Context(http, redis), event_for(sf_site(org.url), lead()))
    assert (result.ok, result.status_code) == (True, 201) and result.ref_id in org.leads
    assert calls(org) == ["POST /services/oauth2/token", "GET /query", "POST /sobjects/Lead/"]
    token_call = org.requests("POST", "/services/oauth2/token")[0]
    assert token_call.headers["content-type"] == "application/x-www-form-urlencoded"
    record = org.leads[result.ref_id]
    assert (record["FirstName"], record["LastName"], record["Company"]) == (
        "Ada",
        "Lovelace",
        "Acme Plumbing",
    )
    assert record["LeadSource"] == "Web" and record["Status"] == "Open - Not Contacted"


async def test_an_email_salesforce_refuses_still_makes_a_lead(org, http, redis):
    the_lead = lead({"name": "Zoë Brun", "email": "zoë@example.com"})
    result = await send(Context(http, redis), event_for(sf_site(org.url), the_lead))
    assert result.ok and result.ref_id in org.leads
    assert calls(org)[-2:] == ["POST /sobjects/Lead/", "POST /sobjects/Lead/"]
    record = org.leads[result.ref_id]
    assert "Email" not in record and "zoë@example.com" in record["Description"]


async def test_the_token_is_fetched_once_and_shared(org, http, redis):
    site = sf_site(org.url)
    first = await send(Context(http, redis), event_for(site, lead()))
    other = lead({"name": "Grace Hopper", "email": "grace@example.com"})
    second = await send(Context(http, redis), event_for(site, other, "evt_2"))
    assert first.ok and second.ok and first.ref_id != second.ref_id
    assert len(org.requests("POST", "/services/oauth2/token")) == 1
    key = token_key(site.destinations[0].options)
    kept = json.loads(await redis.get(key))
    assert kept == {"access_token": org.issued[0], "instance_url": org.url}
    assert 0 < await redis.ttl(key) <= TOKEN_TTL
    assert all(r.headers["authorization"] == f"Bearer {org.issued[0]}" for r in org.data_calls())


async def test_without_redis_the_token_is_kept_in_the_process(org, http):
    site = sf_site(org.url)
    assert (await send(Context(http, None), event_for(site, lead()))).ok
    assert (await send(Context(http, None), event_for(site, lead(), "evt_2"))).ok
    assert len(org.issued) == 1 and len(org.leads) == 1


async def test_an_expired_token_is_replaced_once(org, http, redis):
    site = sf_site(org.url)
    assert (await send(Context(http, redis), event_for(site, lead()))).ok
    org.expire_tokens()
    result = await send(Context(http, redis), event_for(site, lead(), "evt_2"))
    assert result.ok and len(org.issued) == 2
    assert calls(org)[3:] == [
        "GET /query",  # 401 INVALID_SESSION_ID
        "POST /services/oauth2/token",
        "GET /query",
        "PATCH /sobjects/Lead/" + result.ref_id,
    ]
    assert (
        json.loads(await redis.get(token_key(site.destinations[0].options)))["access_token"]
        == org.issued[1]
    )


async def test_a_refused_new_token_is_dead_and_leaks_nothing(org, http, redis):
    org.dead_tokens = True
    result = await send(Context(http, redis), event_for(sf_site(org.url), lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert result.error == "Salesforce token rejected; check the connected app's API access"
    assert len(org.issued) == 2  # the first, and one more after its 401
    shown = (result.error or "") + result.response_snippet
    assert SECRET not in shown and not any(token in shown for token in org.issued)


async def test_wrong_client_secret_is_dead_without_the_secret(org, http, redis):
    result = await send(
        Context(http, redis), event_for(sf_site(org.url, secret="wrong-secret-x"), lead())
    )
    assert (result.ok, result.retryable, result.status_code) == (False, False, 400)
    assert (result.error or "").startswith(
        "Salesforce rejected the client credentials; check salesforce_client_id"
    )
    assert "wrong-secret-x" not in (result.error or "") + result.response_snippet
    assert org.data_calls() == [] and await redis.dbsize() == 0


async def test_same_email_updates_the_open_lead(org, http, redis):
    existing = org.add(
        LastName="Lovelace-King",
        Company="Real Co",
        Email="ADA@example.com",
        LeadSource="Trade Show",
    )
    result = await send(Context(http, redis), event_for(sf_site(org.url), lead()))
    assert (result.ok, result.status_code, result.ref_id) == (True, 204, existing)
    record = org.leads[existing]
    assert (record["LastName"], record["Company"], record["LeadSource"]) == (
        "Lovelace",
        "Real Co",
        "Trade Show",
    )
    assert len(org.leads) == 1


async def test_a_quote_in_the_email_round_trips(org, http, redis):
    existing = org.add(LastName="O'Brien", Company="Pub", Email="o'brien\\x@example.com")
    the_lead = lead({"name": "Pat O'Brien", "email": "o'brien\\x@example.com"})
    result = await send(Context(http, redis), event_for(sf_site(org.url), the_lead))
    assert result.ok and result.ref_id == existing


async def test_an_injection_in_the_email_matches_nothing(org, http, redis):
    victim = org.add(LastName="Victim", Company="V", Email="victim@example.com")
    the_lead = lead({"name": "Mallory", "email": "x' OR Email != '"})
    result = await send(Context(http, redis), event_for(sf_site(org.url), the_lead))
    assert result.ok and result.status_code == 201 and result.ref_id != victim
    assert org.leads[victim]["LastName"] == "Victim"
    [query] = org.requests("GET")
    assert query.query["q"] == lookup_soql("x' OR Email != '")


async def test_abandoned_then_completed_patches_the_same_lead(org, http, redis):
    site = sf_site(org.url)
    first = await send(
        Context(http, redis), event_for(site, lead({"phone": "+14155550100"}, abandoned=True))
    )
    assert first.ok and org.leads[first.ref_id]["LastName"] == "Visitor"
    completed = lead({"phone": "+14155550100", "name": "Ada Lovelace"}, ref_id=first.ref_id)
    second = await send(Context(http, redis), event_for(site, completed, "evt_2"))
    assert (second.ok, second.status_code, second.ref_id) == (True, 204, first.ref_id)
    assert org.leads[first.ref_id]["LastName"] == "Lovelace"
    assert calls(org)[-1] == f"PATCH /sobjects/Lead/{first.ref_id}"
    assert len(org.requests("GET")) == 0  # no email, no query


async def test_refid_patch_does_not_overwrite_with_fallbacks(org, http, redis):
    typed = org.add(LastName="Smith", Company="Typed By Sales")
    the_lead = lead({"message": "hello again"}, ref_id=typed)
    result = await send(Context(http, redis), event_for(sf_site(org.url), the_lead))
    assert result.ok and result.ref_id == typed
    assert (org.leads[typed]["LastName"], org.leads[typed]["Company"]) == (
        "Smith",
        "Typed By Sales",
    )


@pytest.mark.parametrize("how", ["delete", "convert"])
async def test_a_gone_lead_falls_back_once(org, http, redis, how):
    site = sf_site(org.url)
    first = await send(Context(http, redis), event_for(site, lead()))
    getattr(org, how)(first.ref_id)
    again = await send(Context(http, redis), event_for(site, lead(ref_id=first.ref_id), "evt_2"))
    assert again.ok and again.status_code == 201 and again.ref_id != first.ref_id
    assert calls(org)[-3:] == [
        f"PATCH /sobjects/Lead/{first.ref_id}",
        "GET /query",
        "POST /sobjects/Lead/",
    ]


async def test_required_fields_are_never_missing(org, http, redis):
    bare = Site(id="x", destinations=sf_site(org.url).destinations)
    for i, fields in enumerate([{}, {"message": "hi"}, {"email": "q@example.com"}]):
        result = await send(Context(http, redis), event_for(bare, lead(fields), f"evt_{i}"))
        assert result.ok and result.status_code == 201, result.error
    assert {r["Company"] for r in org.leads.values()} == {"[not provided]"}


async def test_an_http_instance_url_is_refused_without_allow_private(org, http, redis):
    site = sf_site(org.url, allow_private=False)
    result = await send(Context(http, redis), event_for(site, lead()))
    assert (result.ok, result.retryable) == (False, False)
    assert (result.error or "").startswith("Salesforce instance_url: ") and "https" in result.error
    assert org.data_calls() == [] and await redis.dbsize() == 0


async def test_request_limit_exceeded_is_retried_later(org, http, redis):
    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    org.fail_with(Answer(403, limit))
    result = await send(Context(http, redis), event_for(sf_site(org.url), lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, True, 403)
    assert result.retry_after == 60.0 and org.leads == {}
    org.fail_with(Answer(503, [{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}]))
    assert (await send(Context(http, redis), event_for(sf_site(org.url), lead()))).retryable
    assert (await send(Context(http, redis), event_for(sf_site(org.url), lead()))).ok


async def test_a_failed_update_keeps_the_id_it_found(org, http, redis):
    existing = org.add(LastName="L", Company="C", Email="ada@example.com")
    site = sf_site(org.url)
    assert (await send(Context(http, redis), event_for(site, lead()))).ok  # warms the token
    # the query finds the lead, then the PATCH fails: the id found travels with the failure
    found = {"totalSize": 1, "done": True, "records": [{"Id": existing}]}
    org.failures = [Answer(200, found), Answer(503)]
    failed = await send(Context(http, redis), event_for(site, lead(), "evt_2"))
    assert (failed.ok, failed.retryable, failed.ref_id) == (False, True, existing)


async def test_the_dispatcher_routes_salesforce(org, http, redis):
    result = await dispatch(Context(http, redis), event_for(sf_site(org.url), lead()))
    assert result.ok and result.ref_id in org.leads


# --- the whole path: widget -> outbox -> delivery loop -> fake org ------------------


async def test_abandoned_then_completed_is_one_lead_through_the_app(app_factory, tmp_path):
    from tests.conftest import Visitor, wait_for

    with FakeSalesforce(CLIENT_ID, SECRET) as fake:
        path = tmp_path / "sites.toml"
        path.write_text(
            '[sites.acme]\nidle_timeout = "1s"\ncompany = "Acme Plumbing"\n'
            "[[sites.acme.destinations]]\nname = 'crm'\nformat = 'salesforce'\n"
            f"salesforce_login_url = '{fake.url}'\nsalesforce_client_id = '{CLIENT_ID}'\n"
            f"salesforce_client_secret = '{SECRET}'\nallow_private = true\n"
        )
        app = await app_factory(config=path)
        async with Visitor.connect(app.ws_url, site="acme") as v:
            await v.field("name", "Ada Lovelace")
            await v.field("email", "ada@example.com")
            await v.expect("lead", timeout=5)  # abandoned
            await v.field("phone", "+1 202 555 0143", frame_id="back-1")
            await v.field("message", "Boiler leaking", frame_id="back-2")
            assert (await v.expect("lead"))["status"] == "completed"
        await wait_for(lambda: fake.requests("PATCH"), 10)
        [lead_id] = fake.leads
        assert calls(fake) == [
            "POST /services/oauth2/token",
            "GET /query",
            "POST /sobjects/Lead/",
            f"PATCH /sobjects/Lead/{lead_id}",  # the refId the outbox kept
        ]
        record = fake.leads[lead_id]
        assert (record["FirstName"], record["LastName"]) == ("Ada", "Lovelace")
        assert record["Phone"] == "+12025550143" and "Boiler leaking" in record["Description"]
