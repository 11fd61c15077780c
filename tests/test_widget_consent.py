"""The consent notice in a real browser (CONTRACT §12): shown before the first question
with the marketing opt-in unticked, nothing to answer until it is accepted, and the
lead carries what was agreed."""

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
[sites.acme]
company = "Brightwater Plumbing"
allowed_origins = ["{origin}"]
[sites.acme.webhook]
url = "{hook}"
[sites.acme.consent]
text = "We keep this conversation for 30 days to answer your request. See our privacy policy."
version = "2026-01"
marketing = "Email me a link to finish later"
"""


@pytest.fixture(scope="module")
def consent_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    toml = SITE.format(origin=lead_receiver.origin, hook=lead_receiver.url)
    with site_server(redis_url, tmp_path_factory.mktemp("consent-server"), toml) as server:
        yield server


@pytest.mark.parametrize("size", [(1440, 900), (390, 844)], ids=["desktop", "phone"])
def test_the_notice_comes_first_and_the_lead_carries_it(
    consent_server: ServerProcess,
    lead_receiver: LeadReceiver,
    new_page: Callable[..., Any],
    size: tuple[int, int],
) -> None:
    page = new_page(*size)
    host_page(
        page,
        consent_server,
        lead_receiver,
        f"consent-{size[0]}",
        "<main><h1>Quotes</h1></main>",
        site="acme",
    )
    page.get_by_role("button", name="Open chat").click()
    notice = page.get_by_role("group", name="We keep this conversation")
    notice.wait_for()
    opt_in = page.get_by_role("checkbox", name="Email me a link to finish later")
    assert not opt_in.is_checked()
    assert not page.get_by_label("Your name", exact=True).is_visible()  # nothing to answer yet
    check_axe(page, "consent")
    snap(page, f"consent-{size[0]}")
    opt_in.check()
    page.get_by_role("button", name="Continue").click()
    answer(page, "Your name", "Ada Lovelace")
    assert not notice.is_visible()
    answer(page, "Your email address", "ada@example.com")
    page.get_by_role("button", name="Skip").click()
    answer(page, "Type your message", "Leak under the sink")
    page.get_by_role("button", name="Start a new conversation").wait_for()
    wait_settled(page)
    sid = widget_eval(page, "return JSON.parse(localStorage.getItem('chatlead:acme')).sid;")
    fields = lead_fields(wait_lead(lead_receiver, sid))
    assert fields["consent"] == "2026-01" and fields["marketing_consent"] == "true"
    assert fields["consent_at"].endswith("Z")
