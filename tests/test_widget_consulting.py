"""The consulting flow of the example site file in a real browser (CONTRACT §12): the
budget question only where it matters, scored choices, and the two variants of its
experiment, each given by the visitor's id."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chatlead.experiments import Variant, choose

from tests import widget_parts
from tests.conftest import ROOT, ServerProcess
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


def _northstar(origin: str, hook: str) -> str:
    """The example file's consulting site, on this origin and posting to this receiver."""
    text = (ROOT / "examples" / "sites.toml").read_text()
    block = text[text.index("[sites.northstar]") :]
    assert tomllib.loads(block)["sites"]["northstar"]["variants"]
    block = block.replace(
        'allowed_origins = ["https://northstar.example"]', f'allowed_origins = ["{origin}"]'
    )
    block = block.replace('url = "https://crm.northstar.example/leads"', f'url = "{hook}"')
    return re.sub(r'secret = "env:NORTHSTAR_SECRET"\n', "", block)


@pytest.fixture(scope="module")
def consulting_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    toml = _northstar(lead_receiver.origin, lead_receiver.url)
    with site_server(redis_url, tmp_path_factory.mktemp("consulting"), toml) as server:
        yield server


def _visitor_of(arm: str) -> str:
    arms = [Variant(name="full", weight=50), Variant(name="quick", weight=50)]
    return next(
        u
        for n in range(1000)
        if choose(arms, "northstar", u := f"visitor-{n}").name == arm  # type: ignore[union-attr]
    )


def _open_as(page: Any, server: ServerProcess, owner: LeadReceiver, arm: str) -> None:
    page.add_init_script(
        f"localStorage.setItem('chatlead:uid', {json.dumps(json.dumps(_visitor_of(arm)))})"
    )
    host_page(
        page,
        server,
        owner,
        f"consulting-{arm}",
        "<main><h1>Northstar</h1></main>",
        site="northstar",
    )
    page.get_by_role("button", name="Open chat").click()


def _lead(page: Any, owner: LeadReceiver) -> dict[str, str]:
    page.get_by_role("button", name="Start a new conversation").wait_for()
    wait_settled(page)
    sid = widget_eval(page, "return JSON.parse(localStorage.getItem('chatlead:northstar')).sid;")
    return lead_fields(wait_lead(owner, sid))


def test_the_full_variant_asks_the_budget_and_qualifies(
    consulting_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page(390, 844)
    _open_as(page, consulting_server, lead_receiver, "full")
    page.get_by_role("button", name="Growth strategy").click()
    page.get_by_role("button", name="Over $50k").click()
    answer(page, "Your name", "Ada Lovelace")
    page.get_by_label("Your email address", exact=True).wait_for()
    check_axe(page, "consulting-full")
    snap(page, "consulting-full-390")
    answer(page, "Your email address", "ada@example.com")
    fields = _lead(page, lead_receiver)
    assert fields["variant"] == "full" and fields["budget"] == "large"
    assert fields["score"] == "80" and fields["qualified"] == "true"  # 20 + 50 + 10


def test_the_full_variant_skips_the_budget_for_something_else(
    consulting_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    _open_as(page, consulting_server, lead_receiver, "full")
    page.get_by_role("button", name="Something else").click()
    answer(page, "Your name", "Grace Hopper")  # the budget is not asked
    answer(page, "Your email address", "grace@example.com")
    fields = _lead(page, lead_receiver)
    assert "budget" not in fields and fields["qualified"] == "false"


def test_the_quick_variant_asks_two_questions(
    consulting_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page(390, 844)
    _open_as(page, consulting_server, lead_receiver, "quick")
    page.get_by_text("Two questions and we'll be in touch.").wait_for()
    page.get_by_role("button", name="$10k to $50k").click()
    page.get_by_label("Your email address", exact=True).wait_for()
    snap(page, "consulting-quick-390")
    answer(page, "Your email address", "linus@example.com")
    fields = _lead(page, lead_receiver)
    assert fields["variant"] == "quick" and fields["budget"] == "medium"
    assert fields["score"] == "40" and fields["qualified"] == "false"
