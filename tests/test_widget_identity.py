"""Identified visitors from the tag (CONTRACT §13) in real Chromium: ``data-user-id`` and
``data-user-hash`` make the lead's ``userId`` the site's user; a broken hash leaves the
visitor anonymous, and the chat works all the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chatlead.identity import user_hash

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import (
    SITE,
    SITE_TOML,
    LeadReceiver,
    answer,
    host_page,
    site_server,
    stored,
    wait_lead,
)

pytestmark = pytest.mark.browser

browser = widget_parts.browser
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

SECRET = "tag-signing-secret-0123456789"


@pytest.fixture(scope="module")
def identity_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    toml = SITE_TOML.format(hook=lead_receiver.url).replace(
        'phone_region = "US"', f'phone_region = "US"\nidentity_secret = "{SECRET}"'
    )
    with site_server(redis_url, tmp_path_factory.mktemp("identity-server"), toml) as server:
        yield server


def chat(page: Any, owner: LeadReceiver) -> dict[str, Any]:
    page.get_by_role("button", name="Open chat").click()
    answer(page, "Your name", "Sam Signed")
    answer(page, "Your email address", "sam@example.com")
    page.get_by_text("And a phone number? (optional)").wait_for()
    page.get_by_role("button", name="Skip").click()
    page.get_by_role("button", name="Leak").click()
    page.get_by_text("Anything else we should know?").wait_for()
    answer(page, "Type your message", "Thanks")
    return wait_lead(owner, stored(page)["sid"])


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "broken-hash"])
def test_the_tag_names_the_user_or_the_visitor_stays_anonymous(
    signed: bool,
    identity_server: ServerProcess,
    lead_receiver: LeadReceiver,
    new_page: Callable[..., Any],
) -> None:
    page = new_page()
    digest = user_hash(SECRET, "cust-7") if signed else "deadbeef"
    host_page(
        page,
        identity_server,
        lead_receiver,
        f"account-{signed}",
        "<main><h1>Your account</h1></main>",
        site=SITE,
        **{"user-id": "cust-7", "user-hash": digest},
    )
    lead = chat(page, lead_receiver)
    user_id = lead["data"]["userId"]
    assert (user_id == "cust-7") is signed and (signed or user_id.startswith("v_"))
    if not signed:
        assert "identity_hash_mismatch site=acme" in identity_server.output()


def test_identify_names_a_user_who_signed_in_after_the_page_loaded(
    identity_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    host_page(page, identity_server, lead_receiver, "spa", "<main><h1>App</h1></main>", site=SITE)
    page.get_by_role("button", name="Open chat").wait_for()
    page.evaluate(
        "([id, hash]) => window.chatlead.identify(id, hash)",
        ["cust-8", user_hash(SECRET, "cust-8")],
    )
    assert chat(page, lead_receiver)["data"]["userId"] == "cust-8"
