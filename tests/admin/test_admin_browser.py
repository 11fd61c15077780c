"""The admin in headless Chromium, by clicks: sign in and out, send a test event, replay,
mark inbox leads handled, search, download the CSV, erase -- with an admin token (the
sign-in form) and without one (the server's own token: the sign-in link ``chatlead
admin-url`` prints, clicked) -- plus local times, axe-core, no sideways scrolling
at 390 px, and screenshots of every page at 1440x900 and 390x844 (``/tmp/shots/``, or
``CHATLEAD_SHOTS``).

The servers run in this process under uvicorn on Redis database ``CHATLEAD_TEST_DB``
(default 12) of the local Redis.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
import redis
from chatlead.admin.seed import seed
from chatlead.experiments import Variant
from chatlead.sites import FlowStep, Site

from tests.admin.serving import (
    TOKEN,
    Served,
    eventually,
    serve,
    visit,
    wait_delivery,
    wait_status,
)
from tests.conftest import admin_headers, admin_url

playwright = pytest.importorskip("playwright.async_api")
axe_module = pytest.importorskip("axe_playwright_python.async_playwright")
expect = playwright.expect

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('CHATLEAD_TEST_DB', '12')}"
SHOTS = Path(os.environ.get("CHATLEAD_SHOTS", "/tmp/shots"))
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
LEAK = [
    ("name", "Ada Lovelace"),
    ("email", "ada@example.com"),
    ("phone", "+1 202 555 0143"),
    ("message", "The boiler in the basement is leaking"),
]
WAIT_MS = 5000


def flush() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        await launched.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def token_server() -> AsyncIterator[Served]:
    flush()
    async with serve(token=TOKEN, redis_url=REDIS_URL) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tokenless_server() -> AsyncIterator[Served]:
    async with serve(token=None, redis_url=REDIS_URL) as running:
        yield running


async def follow_link(page: Any, served: Served) -> None:
    """Sign in as the operator of a server without ADMIN_TOKEN: open a fresh link."""
    served.http.headers.update(admin_headers(REDIS_URL))  # the token after a flush
    await page.goto(admin_url(REDIS_URL, served.url))


@dataclass
class Admin:
    """A browser tab on the admin of one server, signed in when that needs a token."""

    served: Served
    page: Any
    mode: str
    dialogs: list[str]

    async def open(self, path: str) -> None:
        await self.page.goto(self.served.url + path)

    async def click(self, role: str, name: str) -> None:
        await self.page.get_by_role(role, name=re.compile(name)).first.click()

    async def notice(self, text: str) -> None:
        await expect(self.page.locator(".notice")).to_contain_text(text, timeout=WAIT_MS)


async def sign_in(page: Any, served: Served, token: str) -> None:
    await page.goto(served.url + "/admin")
    await page.get_by_label("Admin or agent token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


@pytest_asyncio.fixture(loop_scope="module", params=["token", "link"])
async def admin(
    request: pytest.FixtureRequest,
    browser: Any,
    token_server: Served,
    tokenless_server: Served,
) -> AsyncIterator[Admin]:
    flush()
    served = token_server if request.param == "token" else tokenless_server
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    if request.param == "token":
        await sign_in(page, served, TOKEN)
    else:
        await follow_link(page, served)
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    yield Admin(served, page, request.param, dialogs)
    assert not dialogs, "visitor text must never run"
    await context.close()


# --- every button, by clicks ---------------------------------------------------


async def test_sign_in_and_out(browser: Any, token_server: Served) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        await sign_in(page, token_server, "not-the-token-at-all-000000")
        await expect(page.get_by_role("alert")).to_have_text("That token is not right.")
        await page.get_by_label("Admin or agent token").fill(TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        assert page.url == token_server.url + "/admin"

        await page.get_by_role("button", name="Sign out").click()
        await expect(page.locator(".notice")).to_have_text("You are signed out.")
        await page.goto(token_server.url + "/admin/inbox")
        await expect(page.get_by_label("Admin or agent token")).to_be_visible()
    finally:
        await context.close()


async def test_test_event_and_replay_buttons(admin: Admin) -> None:
    await admin.open("/admin")
    await admin.page.get_by_label("Period").select_option("7d")
    await admin.click("button", "^Apply$")
    await expect(admin.page).to_have_url(re.compile(r"/admin\?since=7d$"))
    await admin.click("button", "Send test event")
    await admin.notice("A test event was queued")
    assert admin.page.url.startswith(admin.served.url + "/admin/deliveries")
    log = (await admin.served.http.get("/api/deliveries")).json()["items"]
    (event,) = [item for item in log if item["event"] == "lead.test"]
    await wait_delivery(admin.served, event["id"], "delivered")

    await admin.page.reload()
    row = admin.page.locator("tr", has_text="lead.test")
    await expect(row.locator(".badge")).to_have_text("delivered")
    await row.get_by_role("button", name=re.compile("Replay")).click()
    await admin.notice("The event was queued for delivery again.")

    async def replayed() -> bool:
        item = (await admin.served.http.get(f"/api/deliveries/{event['id']}")).json()
        return item["status"] == "delivered" and len(item["attempts"]) == 2

    await eventually(replayed, what="the replayed test event")
    # the test event waits under "Test events", apart from real leads
    await admin.open("/admin/inbox")
    await expect(admin.page.locator(".empty")).to_contain_text("The inbox is empty")
    await admin.click("link", "Test events")
    await expect(admin.page.locator("tbody tr")).to_have_count(1)
    await expect(admin.page.locator("tbody tr")).to_contain_text("Test Lead")


async def test_a_browser_hiding_its_origin_can_still_use_the_forms(admin: Admin) -> None:
    """A stricter referrer policy makes Chromium send ``Origin: null``: still accepted,
    since it also sends ``Sec-Fetch-Site: same-origin`` and the CSRF token."""
    origins: list[str | None] = []

    async def no_referrer(route: Any) -> None:
        response = await route.fetch()
        headers = {**response.headers, "referrer-policy": "no-referrer"}
        await route.fulfill(response=response, headers=headers)

    admin.page.on(
        "request",
        lambda r: origins.append(r.headers.get("origin")) if r.method == "POST" else None,
    )
    await admin.page.route(re.compile(r".*/admin$"), no_referrer)
    await admin.open("/admin")
    await admin.click("button", "Send test event")
    await admin.notice("A test event was queued")
    assert origins == ["null"]


async def test_inbox_buttons_search_and_csv(admin: Admin) -> None:
    done = await visit(admin.served, LEAK)
    left = await visit(admin.served, [("name", "Bob Builder"), ("email", "bob@example.com")])
    await wait_delivery(admin.served, f"evt_{done}_completed", "delivered")
    await wait_status(admin.served, left, "abandoned")
    await wait_delivery(admin.served, f"evt_{left}_abandoned_1", "delivered")

    await admin.open("/admin/inbox")
    rows = admin.page.locator("tbody tr")
    await expect(rows).to_have_count(2)
    ada = rows.filter(has_text="Ada Lovelace")
    await expect(ada).to_contain_text("The boiler in the basement is leaking")
    await expect(ada.locator(".badge").first).to_have_text("new")
    await ada.get_by_role("button", name=re.compile("Mark handled")).click()
    await admin.notice("Marked handled.")
    await expect(rows.filter(has_text="Ada Lovelace").locator(".badge").first).to_have_text(
        "handled"
    )
    await admin.click("link", "^New$")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Bob Builder")
    await admin.click("link", "^Handled$")
    await expect(rows).to_have_count(1)
    await rows.get_by_role("button", name=re.compile("Mark new")).click()
    await admin.notice("Marked new again.")
    await expect(rows).to_have_count(0)  # still on "Handled": nothing left there
    await admin.click("link", "^All$")
    await admin.page.get_by_label("Search leads").fill("boiler")
    await admin.click("button", "^Search$")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Ada Lovelace")
    await rows.get_by_role("link", name="Ada Lovelace").click()
    await expect(admin.page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()

    await admin.open("/admin")
    async with admin.page.expect_download() as info:
        await admin.click("link", "Download CSV")
    download = await info.value
    assert download.suggested_filename.startswith("abandoned-all-")
    text = Path(await download.path()).read_text(encoding="utf-8-sig")
    header, *lines = text.splitlines()
    assert header.startswith("session_id,site,status,started_at")
    assert len(lines) == 1 and lines[0].startswith(f"{left},default,abandoned,")
    assert "bob@example.com" in lines[0]


async def test_erase_button(admin: Admin) -> None:
    sid = await visit(admin.served, [("name", HOSTILE), ("email", "mallory@example.com")])
    await wait_status(admin.served, sid, "abandoned")
    await admin.open("/admin/sessions")
    await admin.page.get_by_role("link", name=HOSTILE).click()
    await expect(admin.page.get_by_role("heading", name=HOSTILE)).to_be_visible()
    await admin.click("button", "Erase session")  # the box is not ticked: the browser stops it
    assert admin.page.url.endswith(f"/admin/sessions/{sid}")
    await admin.page.get_by_label("I want to erase this session's personal data").check()
    await admin.click("button", "Erase session")
    await admin.notice("The session's personal data was erased.")
    assert (await admin.served.http.get(f"/api/sessions/{sid}")).status_code == 404
    await admin.open("/admin/sessions")
    await expect(admin.page.locator(".empty")).to_be_visible()


async def test_the_spam_tab_and_the_release_button(admin: Admin) -> None:
    spam = [(name, "bot@mailinator.com" if name == "email" else value) for name, value in LEAK]
    sid = await visit(admin.served, spam)  # a disposable address: held back (§12)
    await wait_status(admin.served, sid, "completed")
    await admin.open("/admin/sessions")
    await admin.page.get_by_role("link", name="Spam", exact=True).click()
    await admin.page.get_by_role("link", name="Ada Lovelace").click()
    await expect(admin.page.get_by_role("heading", name="Held back as spam")).to_be_visible()
    await expect(admin.page.get_by_text("spam: disposable")).to_be_visible()
    await admin.click("button", "Release and send")
    await admin.notice("Released: the lead is on its way")
    await wait_delivery(admin.served, f"evt_{sid}_completed", "delivered")
    await expect(admin.page.get_by_role("heading", name="Held back as spam")).to_have_count(0)
    await admin.open("/admin/sessions?status=spam")
    await expect(admin.page.locator(".empty")).to_be_visible()


async def test_sessions_list_pages_and_filters(admin: Admin) -> None:
    ids = [await visit(admin.served, [("name", f"Visitor {n}")]) for n in range(3)]
    done = await visit(admin.served, LEAK)
    await admin.open("/admin/sessions?since=24h")
    rows = admin.page.locator("tbody tr")
    await expect(rows).to_have_count(4)
    await expect(rows.first).to_contain_text("Ada Lovelace")  # newest first
    await admin.click("link", "^Completed$")
    await expect(rows).to_have_count(1)
    assert "status=completed" in admin.page.url
    for sid in ids:
        await wait_status(admin.served, sid, "abandoned")
    await admin.click("link", "^Abandoned$")
    await expect(rows).to_have_count(3)
    answer = await admin.served.http.get("/api/sessions", params={"limit": 2})
    first = answer.json()
    assert [row["session_id"] for row in first["items"]] == [done, ids[2]]
    more = await admin.served.http.get(
        "/api/sessions", params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert [row["session_id"] for row in more.json()["items"]] == [ids[1], ids[0]]


# --- how it looks -----------------------------------------------------------------


async def test_times_are_local_and_the_admin_works_without_script(
    browser: Any, tokenless_server: Served
) -> None:
    flush()
    tokenless_server.http.headers.update(admin_headers(REDIS_URL))
    sid = await visit(tokenless_server, LEAK)
    started = (await tokenless_server.http.get(f"/api/sessions/{sid}")).json()["created_at"]
    local = datetime.fromisoformat(started).astimezone(ZoneInfo("America/New_York"))
    for script in (True, False):
        context = await browser.new_context(
            timezone_id="America/New_York", locale="en-US", java_script_enabled=script
        )
        page = await context.new_page()
        await follow_link(page, tokenless_server)
        await page.goto(f"{tokenless_server.url}/admin/sessions/{sid}")
        shown = page.locator(f'time[datetime="{started}"]').first
        if script:
            await expect(shown).to_contain_text(local.strftime("%I:%M"))
            await expect(shown).not_to_contain_text("UTC")
            await expect(shown).to_have_attribute("title", re.compile("UTC$"))
            await expect(page.locator("[data-zone]")).to_have_text("Times in America/New_York")
        else:
            await expect(shown).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))
        await context.close()


PAGES = {
    "dashboard": "/admin",
    "inbox": "/admin/inbox",
    "sessions": "/admin/sessions",
    "session": "/admin/sessions/{sid}",
    "recovery": "/admin/recovery",
    "deliveries": "/admin/deliveries",
}
SCREENS = {"desktop": (1440, 900), "phone": (390, 844)}


async def _seed_showcase(served: Served) -> str:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        seed(client, abandoned=240, completed=130, sites=["default", "acme"])
    finally:
        client.close()
    answers = [*LEAK[:2], ("service", "Leak"), LEAK[3]]
    sid = await visit(
        served, answers, site="acme", page="https://acme.example/quote?utm_source=ads"
    )
    await visit(served, [("name", "Grace Hopper"), ("email", "grace@example.com"), ("phone", "")])
    await visit(served, [("name", "Linus"), ("service", "Drain")], site="acme")
    await visit(served, [("name", HOSTILE), ("email", "mallory@example.com")], submit=True)
    await served.http.post("/api/sites/acme/test-event")
    await wait_delivery(served, f"evt_{sid}_completed", "delivered")
    return sid


async def test_every_page_fits_a_phone_and_passes_axe(browser: Any) -> None:
    flush()
    sites = {
        "default": Site(id="default", idle_timeout=900),
        "acme": Site(
            id="acme",
            company="Brightwater Plumbing",
            idle_timeout=900,
            flow=(
                FlowStep(field="name", ask="What's your name?", required=True),
                FlowStep(field="email", ask="Your email?", kind="email", required=True),
                FlowStep(
                    field="service",
                    ask="What do you need?",
                    kind="choice",
                    options=("Leak", "Drain", "Water heater"),
                ),
                FlowStep(field="message", ask="Anything else we should know?"),
            ),
            variants=(Variant(name="full"), Variant(name="quick", greeting="Quick quote?")),
        ),
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with serve(token=TOKEN, redis_url=REDIS_URL, sites=sites) as served:
        sid = await _seed_showcase(served)
        for screen, (width, height) in SCREENS.items():
            context = await browser.new_context(viewport={"width": width, "height": height})
            page = await context.new_page()
            await page.goto(served.url + "/admin")
            await page.screenshot(path=str(SHOTS / f"login-{screen}.png"), full_page=True)
            await page.get_by_label("Admin or agent token").fill(TOKEN)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            for name, path in PAGES.items():
                await page.goto(served.url + path.format(sid=sid))
                await page.screenshot(path=str(SHOTS / f"{name}-{screen}.png"), full_page=True)
                scroll = await page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= width, f"{name} scrolls sideways at {width} px: {scroll}"
                if screen == "desktop":
                    results = await axe_module.Axe().run(page)
                    serious = [
                        v["id"]
                        for v in results.response["violations"]
                        if v["impact"] in ("serious", "critical")
                    ]
                    assert serious == [], (name, results.generate_report())
            await context.close()
