"""An abandoned lead's resume link in every format (CONTRACT §11), pure."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from chatlead.formats import (
    LeadEvent,
    copper,
    email_alert,
    external_lead,
    hubspot,
    pipedrive,
    pulse,
    salesforce,
    slack,
)
from chatlead.formats.transcript_text import RESUME_LABEL

from tests.fakes.leads import event_for, lead, site_with

URL = "https://chat.example/r/" + "T" * 71
NOTE_END = f"\n\n{RESUME_LABEL}: {URL}"


def _abandoned(**destination: object) -> LeadEvent:
    event = event_for(site_with(**destination), lead(abandoned=True))
    return replace(event, resume_url=URL)


def test_the_webhook_envelope_carries_it_only_when_abandoned() -> None:
    event = _abandoned(url="https://hooks.example/x")
    _, body = external_lead.build_request(event, datetime.now(UTC))
    assert json.loads(body)["resume_url"] == URL
    completed = event_for(site_with(url="https://hooks.example/x"), lead())
    _, body = external_lead.build_request(completed, datetime.now(UTC))
    assert "resume_url" not in json.loads(body)


def test_every_crm_note_ends_with_it() -> None:
    event = _abandoned(format="copper", copper_api_key="k", copper_user_email="u@example.com")
    assert copper.lead_properties(event)["details"].endswith(NOTE_END)
    event = _abandoned(
        url="https://pulse.example", format="pulse", pulse_api_key="k", pulse_api_secret="s"
    )
    assert pulse.lead_body(event)["notes"].endswith(NOTE_END)
    event = _abandoned(format="hubspot", hubspot_token="t")
    assert hubspot.note_body(event).endswith(f"{RESUME_LABEL}: {URL}")
    event = _abandoned(
        format="salesforce",
        salesforce_login_url="https://login.example",
        salesforce_client_id="c",
        salesforce_client_secret="s",
    )
    assert salesforce.lead_body(event)["Description"].endswith(NOTE_END)
    event = _abandoned(format="pipedrive", pipedrive_token="t")
    content = pipedrive.note_content(event.lead, event.resume_url)
    assert content.endswith(f"<br><br>{RESUME_LABEL}: {URL}")


def test_the_alerts_link_to_it() -> None:
    event = _abandoned(format="email", to=["owner@example.com"])
    link = "https://chat.example/admin/live?session=x"
    assert f"{email_alert.RESUME_TEXT}: {URL}" in email_alert.text_body(event, link)
    assert f'href="{URL}"' in email_alert.html_body(event, link)
    event = _abandoned(format="slack", url="https://hooks.slack.example/x")
    payload = slack.build_payload(event, link)
    buttons = [
        b for block in payload["blocks"] if block["type"] == "actions" for b in block["elements"]
    ]
    assert [b["url"] for b in buttons] == [link, URL]
    assert URL in payload["text"]
