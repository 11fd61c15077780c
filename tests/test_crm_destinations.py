"""One conversation reaches HubSpot, Salesforce, Pipedrive, an SMTP inbox and Slack (all
local servers that check what the vendors document) as five deliveries per event; a
visitor who left and came back updates the same record in each CRM (CONTRACT §9)."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from chatlead.formats import Context, send

from tests.conftest import Visitor, free_port, wait_for
from tests.fakes import Answer, FakeServer, Seen
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.leads import event_for, lead, site_with
from tests.fakes.pipedrive import FakePipedrive
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.slack import FakeSlack

HUBSPOT, PIPEDRIVE = "pat-na1-e2e-0123456789", "pd_e2e_0123456789abcdef"
SF_ID, SF_SECRET = "3MVG9e2e.key", "sf-e2e-secret-0123"
NAME = 'Zoë O\'Brien-"Ace"'
NEEDS = 'Boiler <script>alert("x")</script> leaking 🚿\nsecond line & more'
LONG = "Details: " + "the pipe under the sink drips, " * 128  # 3,977 characters (cap 4,000)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[_Inbox, int]]:
    handler, port = _Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def _site_file(tmp_path: Path, hub: str, sf: str, pd: str, slack: str) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(
        f"""
[sites.acme]
idle_timeout = "1s"
company = "Acme Plumbing"

[[sites.acme.destinations]]
name = "hubspot"
format = "hubspot"
url = "{hub}"
hubspot_token = "{HUBSPOT}"
allow_private = true

[[sites.acme.destinations]]
name = "salesforce"
format = "salesforce"
salesforce_login_url = "{sf}"
salesforce_client_id = "{SF_ID}"
salesforce_client_secret = "{SF_SECRET}"
allow_private = true

[[sites.acme.destinations]]
name = "pipedrive"
format = "pipedrive"
url = "{pd}"
pipedrive_token = "{PIPEDRIVE}"
allow_private = true

[[sites.acme.destinations]]
name = "owner-email"
format = "email"
to = ["owner@acme.example"]
allow_private = true

[[sites.acme.destinations]]
name = "slack"
format = "slack"
url = "{slack}"
allow_private = true
"""
    )
    return path


async def test_one_conversation_reaches_every_crm_and_alert_once_per_record(
    app_factory: Any, tmp_path: Path, inbox: tuple[_Inbox, int]
) -> None:
    mail, smtp_port = inbox
    with (
        FakeHubSpot(HUBSPOT) as hub,
        FakeSalesforce(SF_ID, SF_SECRET) as sf,
        FakePipedrive(PIPEDRIVE) as pd,
        FakeSlack() as slack,
    ):
        app = await app_factory(
            config=_site_file(tmp_path, hub.url, sf.url, pd.base, slack.hook_url),
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            smtp_from="chatlead <alerts@acme.example>",
            public_url="https://chat.acme.example",
        )
        async with Visitor.connect(app.ws_url, site="acme") as v:
            await v.field("name", NAME)
            await v.field("email", "zoe@example.com")
            assert (await v.expect("lead", timeout=5))["status"] == "abandoned"
            # the abandoned lead reaches all five before the visitor comes back
            await wait_for(lambda: len(slack.messages) == 1 and len(mail.messages) == 1, 10)
            await wait_for(lambda: len(hub.contacts) == 1 and len(sf.leads) == 1, 10)
            await wait_for(lambda: len(pd.leads) == 1, 10)
            answer = await v.message(LONG, frame_id="back-0")
            assert answer["type"] == "ack", answer
            await v.field("phone", "+1 202 555 0143", frame_id="back-1")
            await v.field("message", NEEDS, frame_id="back-2")
            assert (await v.expect("lead"))["status"] == "completed"
        sid = str(v.welcome["session_id"])

        await wait_for(lambda: len(slack.messages) == 2 and len(mail.messages) == 2, 10)
        await wait_for(lambda: len(hub.notes) == 2 and len(pd.notes) == 2, 10)
        await wait_for(lambda: sf.requests("PATCH"), 10)

        # one record per CRM: created once, then updated through the kept refId
        [(contact_id, contact)] = hub.contacts.items()
        assert contact["phone"] == "+12025550143" and contact["email"] == "zoe@example.com"
        assert len(hub.requests("POST", "/crm/v3/objects/contacts")) == 1
        assert hub.requests("PATCH", f"/crm/v3/objects/contacts/{contact_id}")
        note = hub.notes_of(contact_id)[-1]["properties"]["hs_note_body"]
        assert "&lt;script&gt;" in note and "<script>" not in note and "🚿" in note
        assert "pipe under the sink drips" in note

        [(lead_id, lead)] = sf.leads.items()
        assert len(sf.requests("POST", "/services/data/v60.0/sobjects/Lead/")) == 1
        assert sf.requests("PATCH", f"/services/data/v60.0/sobjects/Lead/{lead_id}")
        # one line per message in the readable transcript: its line break becomes a space
        assert lead["Phone"] == "+12025550143"
        assert NEEDS.replace("\n", " ") in lead["Description"]
        assert LONG.strip() in lead["Description"]  # the long message, intact

        [(pd_lead_id, pd_lead)] = pd.leads.items()
        assert len(pd.requests("POST", "/api/v1/leads")) == 1
        assert pd.requests("PATCH", f"/api/v1/leads/{pd_lead_id}")
        assert len(pd.persons) == 1 and pd_lead["title"].startswith("Zoë O'Brien")

        abandoned, completed = mail.messages
        assert abandoned["Subject"].startswith("Abandoned chat: Zoë O'Brien")
        assert completed["Subject"].startswith("New lead: Zoë O'Brien")
        html = completed.get_body(("html",)).get_content()
        text = completed.get_body(("plain",)).get_content()
        assert "&lt;script&gt;" in html and "<script>" not in html
        assert NEEDS.splitlines()[0] in text
        assert f"https://chat.acme.example/admin/live?session={sid}" in text
        assert abandoned["Message-ID"] != completed["Message-ID"]

        assert slack.problems == []  # every message was within Block Kit's rules
        blocks = slack.messages[1]["blocks"]
        shown = str(blocks)
        assert "&lt;script&gt;" in shown and "<script>" not in shown
        full = slack.messages[1]["text"]  # the whole text, escaped, beside the cut blocks
        assert '&lt;script&gt;alert("x")&lt;/script&gt; leaking 🚿' in full
        assert "second line &amp; more" in full and full.count("pipe under the sink") == 128


class _Garbage(FakeServer):
    """A CRM behind a proxy that answers every call 200 with an HTML page."""

    def handle(self, request: Seen) -> Answer:
        return Answer(200, text="<html><body>upstream proxy error</body></html>")


@pytest.mark.parametrize(
    "keys",
    [
        {"format": "hubspot", "hubspot_token": HUBSPOT},
        {"format": "pipedrive", "pipedrive_token": PIPEDRIVE},
        {
            "format": "salesforce",
            "salesforce_client_id": SF_ID,
            "salesforce_client_secret": SF_SECRET,
        },
        {"format": "pulse", "pulse_api_key": "pk_e2e_0123", "pulse_api_secret": "ps_e2e_0123"},
    ],
    ids=lambda keys: keys["format"],
)
async def test_a_crm_answering_garbage_is_retried_not_lost(
    keys: dict[str, str], http: httpx.AsyncClient
) -> None:
    with _Garbage() as garbage:
        if keys["format"] == "salesforce":
            site = site_with(salesforce_login_url=garbage.url, **keys)
        else:
            site = site_with(url=garbage.url, **keys)
        result = await send(Context(http), event_for(site, lead()))
    assert (result.ok, result.retryable) == (False, True)
    assert result.error and keys["format"].capitalize()[:4].lower() in result.error.lower()
