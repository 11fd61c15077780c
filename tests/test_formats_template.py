"""Format ``template``: rendering and validation (pure), delivery to a real receiver."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from chatlead.errors import ConfigError, DeliveryError
from chatlead.formats import Context
from chatlead.formats import send as dispatch
from chatlead.formats.template import (
    BUDGET_S,
    build_request,
    render_body,
    send,
    validate_template,
)
from chatlead.outbox import Outbox
from fakes.leads import event_for, lead, site_with
from fakes.receiver import FakeReceiver
from standardwebhooks.webhooks import Webhook as Verifier

from tests.conftest import FULL_CONVERSATION, Visitor

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
NOW = datetime(2026, 11, 23, 14, 6, 30, tzinfo=UTC)

BODY = """{
  "contact": {"name": {{ fields.name | tojson }}, "email": {{ fields.email | tojson }},
              "phone": {{ fields.phone | tojson }}},
  "abandoned": {{ lead.isAbandoned | tojson }},
  "event": {{ event.id | tojson }}, "kind": {{ event.type | tojson }},
  "at": {{ event.created_at | tojson }},
  "site": {{ site.id | tojson }}, "business": {{ site.company | tojson }},
  "ref": {{ lead.refId | tojson }},
  "lines": {{ lead.transcript | length }},
  "notes": {{ transcript_text | tojson }}
}"""


def template_site(url="https://hooks.example/in", template=BODY, **extra):
    return site_with(url=url, format="template", template=template, **extra)


# --- pure -----------------------------------------------------------------------


def test_renders_lead_event_and_site():
    the_lead = lead(
        {
            "name": 'Ada "Countess" Lovelace',
            "phone_number": "+14155550100",
            "email": "ada@example.com",
        }
    )
    data = json.loads(render_body(event_for(template_site(), the_lead)))
    assert data == {
        "contact": {
            "name": 'Ada "Countess" Lovelace',
            "email": "ada@example.com",
            "phone": "+14155550100",
        },
        "abandoned": False,
        "event": "evt_1",
        "kind": "lead.completed",
        "at": "2026-11-23T14:05:00Z",
        "site": "acme",
        "business": "Acme Plumbing",
        "ref": None,
        "lines": 4,
        "notes": data["notes"],
    }
    assert data["notes"].splitlines()[0] == "2026-11-23 14:01 UTC  Bot: What's your name?"


def test_tojson_makes_hostile_text_safe():
    the_lead = lead({"name": 'x", "admin": true, "y": "\n</script>\u2028!'})
    data = json.loads(render_body(event_for(template_site(), the_lead)))
    assert data["contact"]["name"] == 'x", "admin": true, "y": "\n</script>\u2028!'
    assert "admin" not in data


def test_autoescape_is_off():
    site = template_site(template='{"n": "{{ fields.company }}"}')
    body = render_body(event_for(site, lead({"company": "Smith & Sons"})))
    assert json.loads(body) == {"n": "Smith & Sons"}


def test_invalid_json_output_is_a_clear_delivery_error():
    site = template_site(template='{"name": {{ fields.name }}}')
    with pytest.raises(DeliveryError, match="not valid JSON"):
        render_body(event_for(site, lead()))


def test_sandbox_refuses_unsafe_access():
    site = template_site(template='{"x": "{{ \'\'.__class__.__mro__[1].__subclasses__() }}"}')
    with pytest.raises(DeliveryError, match="SecurityError: .*unsafe"):
        render_body(event_for(site, lead()))
    site = template_site(template='{"x": "{{ lead.__class__ }}"}')
    assert json.loads(render_body(event_for(site, lead()))) == {"x": ""}
    site = template_site(template='{"x": {{ lead.fields.append(1) }}}')
    with pytest.raises(DeliveryError, match="template failed"):
        render_body(event_for(site, lead()))


def test_headers_are_templates_and_signature_covers_the_body():
    site = template_site(
        secrets=(SECRET, OLD_SECRET),
        headers={"X-Site": "{{ site.id }}", "Authorization": "Token abc", "webhook-id": "forged"},
    )
    event = event_for(site, lead())
    headers, body = build_request(event, NOW)
    assert headers["x-site"] == "acme"
    assert headers["authorization"] == "Token abc"
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    new_sig, old_sig = headers["webhook-signature"].split(" ")
    assert new_sig.startswith("v1,") and old_sig.startswith("v1,")


def test_header_injection_is_refused():
    site = template_site(headers={"X-Name": "{{ fields.name }}"})
    with pytest.raises(DeliveryError, match="line break"):
        build_request(event_for(site, lead({"name": "a\r\nX-Evil: 1"})), NOW)


def test_validate_template():
    validate_template(BODY)
    validate_template("Token {{ site.id }}", json_body=False)
    with pytest.raises(ConfigError, match="syntax error at line 2"):
        validate_template('{"a":\n {{ fields.name | tojson }')
    with pytest.raises(ConfigError, match="not valid JSON"):
        validate_template('{"a": {{ fields.name | tojson }},}')
    with pytest.raises(ConfigError, match="syntax"):
        validate_template("{% if %}", json_body=False)


# --- delivery to a real receiver ----------------------------------------------------


async def test_delivery_posts_signed_rendered_json(http):
    with FakeReceiver() as receiver:
        site = template_site(receiver.url + "/crm", secrets=(SECRET,), headers={"X-Key": "k1"})
        result = await dispatch(Context(http), event_for(site, lead(ref_id="77")))
    assert result.ok and result.status_code == 200
    [seen] = receiver.seen
    assert (seen.method, seen.path, seen.headers["x-key"]) == ("POST", "/crm", "k1")
    assert seen.json["ref"] == "77"
    payload = Verifier(SECRET).verify(seen.body.decode(), seen.headers)
    assert payload["event"] == "evt_1"


async def test_bad_template_is_dead_without_sending(http):
    with FakeReceiver() as receiver:
        site = template_site(receiver.url, template='{"a": {{ fields.name }}}')
        result = await send(Context(http), event_for(site, lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, False, None)
    assert "not valid JSON" in (result.error or "")
    assert receiver.seen == []


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (400, False)])
async def test_receiver_answers_are_classified(http, status, retryable):
    with FakeReceiver(status) as receiver:
        result = await send(Context(http), event_for(template_site(receiver.url), lead()))
    assert (result.ok, result.retryable, result.status_code) == (False, retryable, status)


async def test_default_format_still_dispatches_without_redis(http):
    with FakeReceiver() as receiver:
        site = site_with(url=receiver.url, secrets=(SECRET,))
        result = await dispatch(Context(http), event_for(site, lead()))
    assert result.ok
    envelope = Verifier(SECRET).verify(receiver.seen[0].body.decode(), receiver.seen[0].headers)
    assert envelope["type"] == "lead.completed" and envelope["data"]["sessionId"]


# --- templates cannot freeze the process ------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"x": "{{ "a" * 10**9 }}"}',
        '{"x": "{{ 10 ** (10 ** 9) }}"}',
        '{"x": "{{ "%0999999999d" % 1 }}"}',
        '{"x": "{{ "x" | center(10**9) }}"}',
        '{"x": "{% for i in range(100000) %}{{ "y" * 100 }}{% endfor %}"}',  # 10 MB of output
    ],
)
def test_huge_values_are_refused_before_they_are_built(body):
    started = time.monotonic()
    with pytest.raises(DeliveryError):
        render_body(event_for(template_site(template=body), lead()))
    assert time.monotonic() - started < 0.5


def test_a_template_that_loops_is_stopped_at_its_budget():
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{}"
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="took longer than 200 ms"):
        render_body(event_for(template_site(template=loop), lead()))
    assert time.monotonic() - started < BUDGET_S + 0.3


def test_visitor_text_cannot_add_json_keys():
    hostile = 'Eve", "admin": true, "x": "\\'
    site = template_site(template='{"name": "{{ fields.name }}", "n": {{ 2 }}}')
    event = event_for(site, lead({"name": hostile}))
    assert json.loads(render_body(event)) == {"name": hostile, "n": 2}


async def test_a_slow_template_on_a_real_server_never_holds_up_healthz(app_factory, tmp_path):
    # cheap on the config-time sample (an empty transcript), a long loop on a real lead
    slow = (
        "{% for i in range(lead.transcript | length * 100) %}"
        "{% for j in range(100000) %}{% endfor %}{% endfor %}{}"
    )
    config = tmp_path / "sites.toml"
    config.write_text(
        "[sites.default]\n[sites.default.webhook]\n"
        'url = "http://127.0.0.1:9/hook"\nformat = "template"\nallow_private = true\n'
        f"template = {json.dumps(slow)}\n"
    )
    app = await app_factory(config=str(config))
    worst = 0.0
    async with Visitor.connect(app.ws_url) as v, httpx.AsyncClient() as http:
        for name, value in FULL_CONVERSATION:
            await v.field(name, value)
        await v.expect("lead")
        store = app.server.config.app.state.runtime.store
        outbox = Outbox(store)
        event_id = f"evt_{v.welcome['session_id']}_completed"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert (await http.get(app.base + "/healthz")).status_code == 200
            worst = max(worst, time.monotonic() - started)
            record, _ = await outbox.load_with_session(event_id)
            if record is not None and record.status == "dead":
                break
            await asyncio.sleep(0.01)
    assert record.status == "dead"
    assert "took longer than" in record.attempts[-1]["error"]
    assert worst < 0.15, worst
