"""The field-service flow in a real browser (CONTRACT §12): job type, then a visit slot
picked from buttons, then the contact; the lead carries the slot and its class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import (
    LeadReceiver,
    answer,
    check_axe,
    host_page,
    lead_fields,
    site_server,
    snap,
    wait_lead,
    wait_settled,
    widget_eval,
)

pytestmark = pytest.mark.browser

browser = widget_parts.browser
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

SITE = """
[sites.quickfix]
company = "QuickFix Plumbing"
allowed_origins = ["{origin}"]
greeting = "Hi! Let's get a plumber booked for you."
[sites.quickfix.webhook]
url = "{hook}"
[[sites.quickfix.flow]]
field = "service"
kind = "choice"
ask = "What do you need?"
options = [
  {{ label = "Leak repair", value = "leak", job_type_id = "plumbing-repair" }},
  "Something else",
]
[[sites.quickfix.flow]]
field = "appointment"
kind = "slot"
ask = "When should we come by?"
when = {{ field = "service", in = ["leak"] }}
[[sites.quickfix.flow]]
field = "name"
ask = "Who should the technician ask for?"
required = true
[sites.quickfix.availability]
timezone = "America/New_York"
hours = "08:00-17:00"
slot = "2h"
lead_time = "4h"
horizon = "7d"
offer = 6
availability_class_id = "weekday-2h"
"""


@pytest.fixture(scope="module")
def slot_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    toml = SITE.format(origin=lead_receiver.origin, hook=lead_receiver.url)
    with site_server(redis_url, tmp_path_factory.mktemp("slot-server"), toml) as server:
        yield server


@pytest.mark.parametrize("size", [(1440, 900), (390, 844)], ids=["desktop", "phone"])
def test_book_a_visit_from_the_offered_slots(
    slot_server: ServerProcess,
    lead_receiver: LeadReceiver,
    new_page: Callable[..., Any],
    size: tuple[int, int],
) -> None:
    page = new_page(*size)
    body = "<main><h1>Book a plumber</h1></main>"
    host_page(page, slot_server, lead_receiver, f"book-{size[0]}", body, site="quickfix")
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("button", name="Leak repair").click()
    group = page.get_by_role("group", name="Quick replies")
    group.get_by_role("button").first.wait_for()
    slots = group.get_by_role("button").all_inner_texts()
    assert len(slots) == 6 and all("–" in label for label in slots)  # "Thu 3 Dec, 10:00–12:00"
    check_axe(page, "slots")
    snap(page, f"slots-{size[0]}")
    group.get_by_role("button", name=slots[1]).click()
    answer(page, "Your name", "Ada Lovelace")
    page.get_by_role("button", name="Start a new conversation").wait_for()
    wait_settled(page)
    sid = widget_eval(page, "return JSON.parse(localStorage.getItem('chatlead:quickfix')).sid;")
    lead = wait_lead(lead_receiver, sid)
    fields = lead_fields(lead)
    assert fields["appointment"].endswith("Z") and fields["service"] == "leak"
    assert lead["data"]["availabilityClassId"] == "weekday-2h"
    assert lead["data"]["jobTypeId"] == "plumbing-repair"
    said = [m["message"] for m in lead["data"]["transcript"]]
    assert slots[1] in said  # the visitor's pick, as they read it
