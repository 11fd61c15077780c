"""Format ``pulse``: builders (pure), then delivery to a fake Pulse CRM."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chatlead.formats import Context
from chatlead.formats import send as dispatch
from chatlead.formats.pulse import (
    Token,
    TokenCache,
    build_lookup,
    lead_body,
    parse_matches,
    parse_token,
    send,
)
from fakes.leads import event_for, lead, site_with
from fakes.pulse import FakePulse

KEY, SECRET = "pk_live_abcdef123456", "ps_secret_9876543210"


def pulse_site(url: str = "https://pulse.example/api/", **extra):
    return site_with(url=url, format="pulse", pulse_api_key=KEY, pulse_api_secret=SECRET, **extra)


# --- pure -----------------------------------------------------------------------


def test_body_splits_the_name_and_maps_fields():
    the_lead = lead(
        {
            "name": "Mary Ann Smith",
            "email": "mary@example.com",
            "phone": "+14155550100",
            "company": "Smith & Co",
        }
    )
    body = lead_body(event_for(pulse_site(), the_lead))
    assert body["firstName"] == "Mary" and body["lastName"] == "Ann Smith"
    assert body["email"] == "mary@example.com"
    assert body["phone"] == "+14155550100"
    assert body["company"] == "Smith & Co"
    assert body["source"] == "chat-widget"
    assert body["notes"].startswith("2026-11-23 14:01 UTC  Bot: What's your name?")
    assert "teamId" not in body and "leadSourceId" not in body


def test_body_fallback_names_on_create_only():
    no_name = lead({"phone_number": "415 555 0100"})
    body = lead_body(event_for(pulse_site(), no_name))
    assert (body["firstName"], body["lastName"]) == ("Website", "Visitor")
    assert body["phone"] == "+14155550100"
    update = lead_body(event_for(pulse_site(), no_name), create=False)
    assert "firstName" not in update and "lastName" not in update
    single = lead_body(event_for(pulse_site(), lead({"name": "Cher"})))
    assert (single["firstName"], single["lastName"]) == ("Cher", "Visitor")
    aliases = lead_body(
        event_for(pulse_site(), lead({"first_name": "Grace", "last_name": "Hopper"}))
    )
    assert (aliases["firstName"], aliases["lastName"]) == ("Grace", "Hopper")


def test_body_carries_configured_team_and_source():
    site = pulse_site(pulse_team_id=7, pulse_lead_source_id=42)
    body = lead_body(event_for(site, lead()))
    assert (body["teamId"], body["leadSourceId"]) == (7, 42)


def test_lookup_escapes_the_email():
    request = build_lookup(
        "https://pulse.example/api", pulse_site().destinations[0].options, "a+b@example.com"
    )
    assert request.url == "https://pulse.example/api/leads?email=a%2Bb%40example.com"


def test_parse_matches_accepts_every_list_shape():
    leads = [{"id": 5, "email": "a@x"}, {"id": 6}]
    assert parse_matches(leads) == ["5", "6"]
    assert parse_matches({"data": leads}) == ["5", "6"]
    assert parse_matches({"leads": leads, "total": 2}) == ["5", "6"]
    assert parse_matches({"data": []}) == []
    assert parse_matches({"error": "x"}) == []


def test_parse_token_and_expiry():
    assert parse_token({"token": "t1", "expiresIn": 3600}, now=100.0) == Token("t1", 3640.0)
    assert parse_token({"accessToken": "t2", "expiresIn": 100}, now=0.0) == Token("t2", 90.0)
    assert parse_token({"accessToken": "t3"}, now=0.0) == Token("t3", None)
    assert parse_token({"expiresIn": 10}, now=0.0) is None
    assert parse_token([], now=0.0) is None
    cache = TokenCache()
    cache.put(("b", "k"), Token("t1", 50.0))
    assert cache.get(("b", "k"), 49.0) == "t1"
    assert cache.get(("b", "k"), 50.0) is None
    cache.put(("b", "k"), Token("t2"))
    cache.drop(("b", "k"), "t1")  # an older token refused: the newer one stays
    assert cache.get(("b", "k"), 1e9) == "t2"


# --- against the fake Pulse -------------------------------------------------------


@pytest.fixture
def pulse() -> Iterator[FakePulse]:
    with FakePulse(KEY, SECRET) as fake:
        yield fake


@pytest.fixture
def tokens() -> TokenCache:
    return TokenCache()


async def test_first_delivery_logs_in_looks_up_and_creates(pulse, http, tokens):
    site = pulse_site(pulse.url, pulse_account_id="acct_42", pulse_team_id=3)
    result = await send(Context(http), event_for(site, lead()), tokens=tokens)
    assert result.ok and result.ref_id == "501"
    assert [(r.method, r.path) for r in pulse.seen] == [
        ("POST", "/auth/login"),
        ("GET", "/leads"),
        ("POST", "/leads"),
    ]
    assert pulse.seen[1].query == {"email": "ada@example.com"}
    assert all(r.headers.get("x-account-id") == "acct_42" for r in pulse.seen)
    assert pulse.seen[2].headers["authorization"] == f"Bearer {pulse.issued[0]}"
    record = pulse.leads[501]
    assert (record["firstName"], record["lastName"], record["teamId"]) == ("Ada", "Lovelace", 3)
    assert "accountId" not in record and "leadSourceId" not in record


async def test_abandoned_then_completed_updates_one_record(pulse, http, tokens):
    site = pulse_site(pulse.url)
    first = await send(
        Context(http),
        event_for(site, lead({"phone": "+14155550100"}, abandoned=True)),
        tokens=tokens,
    )
    assert first.ok and first.ref_id == "501"
    assert (pulse.leads[501]["firstName"], pulse.leads[501]["lastName"]) == ("Website", "Visitor")

    completed = lead(
        {"phone": "+14155550100", "name": "Ada Lovelace", "email": "ada@example.com"},
        ref_id=first.ref_id,
    )
    second = await send(Context(http), event_for(site, completed, "evt_2"), tokens=tokens)
    assert second.ok and second.ref_id == "501"
    assert list(pulse.leads) == [501]
    record = pulse.leads[501]
    assert (record["firstName"], record["lastName"], record["email"]) == (
        "Ada",
        "Lovelace",
        "ada@example.com",
    )
    assert pulse.logins == 1  # the token was reused
    assert [(r.method, r.path) for r in pulse.seen][-1] == ("PATCH", "/leads/501")


@pytest.mark.parametrize("shape", ["array", "data", "leads"])
async def test_existing_email_is_patched_whatever_the_list_shape(http, tokens, shape):
    with FakePulse(KEY, SECRET, list_shape=shape, token_field="accessToken") as pulse:
        site = pulse_site(pulse.url)
        a = await send(Context(http), event_for(site, lead(abandoned=True)), tokens=tokens)
        b = await send(Context(http), event_for(site, lead(), "evt_2"), tokens=tokens)
    assert a.ok and b.ok and a.ref_id == b.ref_id == "501"
    assert list(pulse.leads) == [501]
    assert [(r.method, r.path) for r in pulse.seen][-2:] == [
        ("GET", "/leads"),
        ("PATCH", "/leads/501"),
    ]


async def test_deleted_record_is_found_or_created_afresh(pulse, http, tokens):
    site = pulse_site(pulse.url)
    result = await send(Context(http), event_for(site, lead(ref_id="999")), tokens=tokens)
    assert result.ok and result.ref_id == "501"
    assert [(r.method, r.path) for r in pulse.seen][1:] == [
        ("PATCH", "/leads/999"),
        ("GET", "/leads"),
        ("POST", "/leads"),
    ]


async def test_expired_token_relogs_in_once(pulse, http, tokens):
    site = pulse_site(pulse.url)
    await send(Context(http), event_for(site, lead()), tokens=tokens)
    pulse.expire_tokens()  # the server no longer accepts the cached token
    result = await send(Context(http), event_for(site, lead(), "evt_2"), tokens=tokens)
    assert result.ok
    assert pulse.logins == 2
    calls = [(r.method, r.path) for r in pulse.seen][3:]
    assert calls == [
        ("GET", "/leads"),
        ("POST", "/auth/login"),
        ("GET", "/leads"),
        ("PATCH", "/leads/501"),
    ]


async def test_stated_expiry_is_honoured(http, tokens):
    with FakePulse(KEY, SECRET, expires_in=0) as pulse:
        site = pulse_site(pulse.url)
        await send(Context(http), event_for(site, lead()), tokens=tokens)
        await send(Context(http), event_for(site, lead(), "evt_2"), tokens=tokens)
    assert pulse.logins == 2
    assert not any(
        r.headers.get("authorization") == f"Bearer {pulse.issued[0]}" for r in pulse.seen[4:]
    )


async def test_persistent_401_is_dead_after_one_relogin(pulse, http, tokens):
    site = pulse_site(pulse.url)
    await send(Context(http), event_for(site, lead()), tokens=tokens)
    original = pulse.handle

    def refuse_bearer(request):
        if request.path == "/auth/login":
            return original(request)
        from fakes import Answer

        return Answer(401, {"error": "unauthorized"})

    pulse.handle = refuse_bearer
    result = await send(Context(http), event_for(site, lead(), "evt_2"), tokens=tokens)
    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert pulse.logins == 2


async def test_wrong_credentials_are_dead_and_never_quoted(pulse, http, tokens):
    site = site_with(
        url=pulse.url, format="pulse", pulse_api_key=KEY, pulse_api_secret="wrong-secret"
    )
    result = await send(Context(http), event_for(site, lead()), tokens=tokens)
    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert "login" in (result.error or "")
    text = (result.error or "") + result.response_snippet
    assert KEY not in text and "wrong-secret" not in text
    assert pulse.leads == {}


async def test_missing_names_are_rejected_by_pulse_but_we_always_send_them(pulse, http, tokens):
    site = pulse_site(pulse.url)
    result = await send(Context(http), event_for(site, lead({})), tokens=tokens)
    assert result.ok
    assert (pulse.leads[501]["firstName"], pulse.leads[501]["lastName"]) == ("Website", "Visitor")
    # The fake enforces the requirement:
    raw = await http.post(
        f"{pulse.url}/leads",
        json={"firstName": "A"},
        headers={"Authorization": f"Bearer {pulse.issued[-1]}"},
    )
    assert raw.status_code == 422


async def test_dispatcher_routes_pulse(pulse, http):
    result = await dispatch(Context(http), event_for(pulse_site(pulse.url), lead()))
    assert result.ok and result.ref_id == "501"


async def test_secrets_never_in_results(http, tokens):
    with FakePulse(KEY, SECRET) as pulse:
        original = pulse.handle

        def echo(request):
            answer = original(request)
            if request.path == "/leads" and request.method == "POST":
                from fakes import Answer

                return Answer(500, {"debug": request.headers.get("authorization")})
            return answer

        pulse.handle = echo
        result = await send(Context(http), event_for(pulse_site(pulse.url), lead()), tokens=tokens)
    assert result.retryable and result.status_code == 500
    assert pulse.issued[0] not in result.response_snippet
    assert "***" in result.response_snippet
