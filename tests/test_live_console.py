"""The live agent console (``/admin/live``, CONTRACT §10) in headless Chromium.

The real server runs in this process under uvicorn on Redis database ``CHATLEAD_TEST_DB``
(default 12). With no live chat the console shows its empty state, with zero axe-core
violations, at desktop and phone sizes; screenshots of both land in the test's tmp dir.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis

from tests.admin.serving import TOKEN, Served, serve

playwright = pytest.importorskip("playwright.async_api")
axe_module = pytest.importorskip("axe_playwright_python.async_playwright")
expect = playwright.expect

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('CHATLEAD_TEST_DB', '12')}"
SCREENS = {"desktop": (1280, 800), "phone": (390, 844)}
WAIT_MS = 5000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Served]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()
    async with serve(token=TOKEN, redis_url=REDIS_URL) as running:
        yield running


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


async def signed_in(browser: Any, served: Served, width: int, height: int, path: str) -> Any:
    """A new tab at ``width``x``height``, signed in through the form, on ``path``."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(served.url + path)
    await page.get_by_label("Admin or agent token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Live chats")).to_be_visible()
    return page


async def test_the_console_page_and_its_files(served: Served) -> None:
    page = await served.http.get("/admin/live")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert "connect-src" not in (await served.http.get("/admin")).headers["content-security-policy"]
    assert 'src="/admin/live.js"' in page.text and 'href="/admin/live.css"' in page.text
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    for path, kind in (
        ("/admin/live.js", "text/javascript"),
        ("/admin/live_view.js", "text/javascript"),
        ("/admin/live.css", "text/css"),
    ):
        asset = await served.http.get(path)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    sid = "0123456789abcdef01234567"
    chosen = await served.http.get("/admin/live", params={"session": sid})
    assert f'data-session="{sid}"' in chosen.text
    bad = await served.http.get("/admin/live", params={"session": '"><b>x'})
    assert bad.status_code == 404 and "<b>x" not in bad.text


@pytest.mark.parametrize("screen", list(SCREENS))
async def test_no_live_chats_is_a_clear_accessible_empty_state(
    browser: Any, served: Served, screen: str, tmp_path: Path
) -> None:
    width, height = SCREENS[screen]
    page = await signed_in(browser, served, width, height, "/admin/live")
    try:
        empty = page.locator("#chats-empty")
        await expect(empty).to_be_visible()
        await expect(empty).to_contain_text("No live chats right now")
        await expect(page.locator(".chat-item")).to_have_count(0)
        await expect(page.locator("#live-status")).to_contain_text(
            re.compile("Connecting|Live|Reconnecting")
        )
        notify = page.get_by_label("Notify me when a visitor waits")
        await expect(notify).not_to_be_checked()
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        await page.screenshot(path=str(tmp_path / f"live-empty-{screen}.png"), full_page=True)
        results = await axe_module.Axe().run(page)
        assert results.violations_count == 0, results.generate_report()
    finally:
        await page.context.close()


async def test_the_notify_choice_is_remembered(browser: Any, served: Served) -> None:
    page = await signed_in(browser, served, 1280, 800, "/admin/live")
    try:
        await page.context.grant_permissions(["notifications"])
        # the page's script is running (a click before it is not remembered)
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        notify = page.get_by_label("Notify me when a visitor waits")
        await notify.check()
        await page.reload()
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        await expect(page.get_by_label("Notify me when a visitor waits")).to_be_checked()
        await page.get_by_label("Notify me when a visitor waits").uncheck()
        await page.reload()
        await expect(page.get_by_label("Notify me when a visitor waits")).not_to_be_checked()
    finally:
        await page.context.close()
