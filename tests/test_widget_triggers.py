"""Proactive openers (CONTRACT §13) in real Chromium: a site's ``[[sites.X.triggers]]``
show their bubble within 100 ms of their condition, once per ``every``, and the chat the
bubble opens names the trigger in the lead."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import widget_parts
from tests.conftest import ServerProcess
from tests.widget_parts import (
    ARTIFACTS,
    SITE,
    SITE_TOML,
    LeadReceiver,
    answer,
    check_axe,
    host_page,
    lead_fields,
    site_server,
    snap,
    stored,
    wait_lead,
    widget_eval,
)

pytestmark = pytest.mark.browser

browser = widget_parts.browser
lead_receiver = widget_parts.lead_receiver
new_page = widget_parts.new_page

TRIGGERS = """
[[sites.acme.triggers]]
id = "pricing"
url_contains = "/pricing"
after = "1.5s"
message = "Questions about our prices? Ask away."

[[sites.acme.triggers]]
id = "deep"
url_matches = "/guide/[0-9]+$"
scroll = 60
message = "Finding what you need?"

[[sites.acme.triggers]]
id = "leaving"
url_contains = "/checkout"
exit_intent = true
every = "1h"
message = "Before you go: any question we can answer?"

[sites.acme.texts.es.triggers]
pricing = "¿Dudas sobre los precios? Pregunta."
"""

# performance.now() when the bubble entered the widget, recorded by the page itself
WATCH_BUBBLE = """
new MutationObserver((_, obs) => {
  const host = document.querySelector('chatlead-widget');
  const bubble = host && host.shadowRoot && host.shadowRoot.querySelector('.t');
  if (bubble) { window.__bubbleAt = performance.now(); obs.disconnect(); }
}).observe(document, {subtree: true, childList: true});
"""


@pytest.fixture(scope="module")
def trigger_server(
    lead_receiver: LeadReceiver, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    toml = SITE_TOML.format(hook=lead_receiver.url) + TRIGGERS
    where: Path = tmp_path_factory.mktemp("trigger-server")
    with site_server(redis_url, where, toml) as server:
        yield server


def record(what: str, delay_ms: float) -> None:
    """Keep the measured delay from condition to bubble (tests/artifacts/, for the notes)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "trigger-delays.json"
    seen = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(seen | {what: round(delay_ms, 1)}, indent=1))


def bubble_text(page: Any) -> str | None:
    return widget_eval(page, "const t = root.querySelector('.t .tm'); return t && t.textContent")  # type: ignore[no-any-return]


def open_page(page: Any, server: ServerProcess, owner: LeadReceiver, name: str, tall: bool) -> None:
    page.add_init_script(WATCH_BUBBLE)
    body = "<main><h1>Host</h1>" + ("<p style='height:4000px'>long</p>" if tall else "") + "</main>"
    host_page(page, server, owner, name, body, site=SITE)


def finish(page: Any, owner: LeadReceiver, name: str) -> dict[str, str]:
    """Answer the whole flow; the lead's fields."""
    answer(page, "Your name", name)
    answer(page, "Your email address", "visitor@example.com")
    page.get_by_text("And a phone number? (optional)").wait_for()
    page.get_by_role("button", name="Skip").click()
    page.get_by_role("button", name="Leak").click()
    page.get_by_text("Anything else we should know?").wait_for()
    answer(page, "Type your message", "Thanks")
    return lead_fields(wait_lead(owner, stored(page)["sid"]))


def test_after_shows_the_bubble_on_time_and_opens_the_chat_it_names(
    trigger_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    open_page(page, trigger_server, lead_receiver, "pricing", tall=False)
    page.wait_for_function("() => window.__bubbleAt", timeout=5000)
    shown = page.evaluate("() => window.__bubbleAt")
    record("after", shown - 1500)
    assert 1500 <= shown < 1600, f"bubble at {shown:.0f} ms, condition at 1500 ms"
    assert bubble_text(page) == "Questions about our prices? Ask away."
    check_axe(page, "trigger bubble")
    snap(page, "trigger-desktop")
    # the bubble started the UI's download: its click opens at once
    page.wait_for_function("() => typeof window.__chatleadUI === 'function'")
    widget_eval(page, "root.querySelector('.t .tm').click()")
    page.get_by_text("What's your name?").wait_for()
    assert bubble_text(page) is None
    assert finish(page, lead_receiver, "Tess Trigger")["trigger"] == "pricing"


def test_scroll_shows_within_100_ms_and_only_where_the_url_matches(
    trigger_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    open_page(page, trigger_server, lead_receiver, "guide/12x", tall=True)  # no match
    page.wait_for_function("() => document.querySelector('chatlead-widget')")
    page.wait_for_timeout(500)
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_timeout(400)
    assert bubble_text(page) is None

    page = new_page(390, 844)
    open_page(page, trigger_server, lead_receiver, "guide/12", tall=True)
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(r => r.name.includes('/triggers/'))"
    )
    page.wait_for_timeout(300)  # the triggers script has run and is listening
    assert bubble_text(page) is None  # 20 % of the page seen
    scrolled = page.evaluate(
        "() => { window.scrollTo(0, document.body.scrollHeight * 0.7); return performance.now(); }"
    )
    page.wait_for_function("() => window.__bubbleAt")
    record("scroll", page.evaluate("() => window.__bubbleAt") - scrolled)
    assert page.evaluate("() => window.__bubbleAt") - scrolled < 100
    assert bubble_text(page) == "Finding what you need?"
    check_axe(page, "trigger bubble, mobile")
    snap(page, "trigger-mobile")
    # dismissed: gone, and not again on the next page within `every`
    page.get_by_role("button", name="Dismiss").click()
    assert bubble_text(page) is None
    open_page(page, trigger_server, lead_receiver, "guide/12", tall=True)
    page.wait_for_timeout(800)
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_timeout(400)
    assert bubble_text(page) is None


def test_exit_intent_on_desktop_and_the_launcher_click_counts(
    trigger_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    open_page(page, trigger_server, lead_receiver, "checkout", tall=False)
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(r => r.name.includes('/triggers/'))"
    )
    page.wait_for_timeout(300)
    page.mouse.move(400, 300)
    assert bubble_text(page) is None
    left = page.evaluate(
        "() => { document.dispatchEvent(new MouseEvent('mouseout', {clientX: 400, clientY: -2,"
        " bubbles: true})); return performance.now(); }"
    )
    page.wait_for_function("() => window.__bubbleAt")
    record("exit_intent", page.evaluate("() => window.__bubbleAt") - left)
    assert page.evaluate("() => window.__bubbleAt") - left < 100
    page.get_by_role("button", name="Open chat").click()  # the launcher, bubble showing
    page.get_by_text("What's your name?").wait_for()
    assert bubble_text(page) is None
    assert finish(page, lead_receiver, "Exi Tintent")["trigger"] == "leaving"


def test_the_bubble_speaks_the_pages_language(
    trigger_server: ServerProcess, lead_receiver: LeadReceiver, new_page: Callable[..., Any]
) -> None:
    page = new_page()
    page.add_init_script(WATCH_BUBBLE)
    host_page(
        page, trigger_server, lead_receiver, "es/pricing", "<main><h1>Precios</h1></main>",
        site=SITE, lang="es",
    )  # fmt: skip
    page.wait_for_function("() => window.__bubbleAt", timeout=5000)
    assert bubble_text(page) == "¿Dudas sobre los precios? Pregunta."
    page.get_by_role("button", name="Descartar").click()
    assert bubble_text(page) is None


def test_a_site_without_triggers_gets_an_empty_script(
    trigger_server: ServerProcess,
) -> None:
    import httpx

    empty = httpx.get(f"{trigger_server.base}/widget/triggers/nosuchsite.js")
    assert empty.status_code == 200 and empty.content == b""
    assert empty.headers["content-type"].startswith("text/javascript")
    full = httpx.get(f"{trigger_server.base}/widget/triggers/{SITE}.js")
    assert b'"id": "pricing"' in full.content and b"__CHATLEAD_TRIGGERS__" not in full.content
    assert full.headers["cache-control"] == "public, max-age=300"
