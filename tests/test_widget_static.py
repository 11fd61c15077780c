"""Serving the widget and the demo page (CONTRACT §7), without a browser."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chatlead import widget
from starlette.applications import Starlette

from tests.conftest import wait_for

CHROMIUM = Path("/usr/bin/chromium")

JS_PATH = widget.STATIC_DIR / "chatlead.js"
UI_PATH = widget.STATIC_DIR / widget.UI_NAME
LOADER_BUDGET_GZIP = 3072  # CONTRACT §13
UI_BUDGET_GZIP = 12 * 1024


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=widget.routes)
    app.state.default_site_id = "acme"
    async with client_for(app) as http:
        yield http


def gzipped_size(path: Path) -> int:
    # level 6 is what servers and CDNs use on the fly; ours is precompressed at 9
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


def test_loader_fits_3_kb_gzipped() -> None:
    size = gzipped_size(JS_PATH)
    assert size <= LOADER_BUDGET_GZIP, f"chatlead.js is {size} bytes gzipped"


def test_ui_fits_12_kb_gzipped() -> None:
    size = gzipped_size(UI_PATH)
    assert size <= UI_BUDGET_GZIP, f"{UI_PATH.name} is {size} bytes gzipped"


def test_the_loader_names_the_one_ui_build_literally() -> None:
    assert re.fullmatch(r"chatlead-ui\.[A-Za-z0-9_-]{6,}\.js", widget.UI_NAME)
    assert sorted(p.name for p in widget.STATIC_DIR.glob("chatlead-ui.*.js")) == [widget.UI_NAME]
    assert f'"{widget.UI_NAME}"' in JS_PATH.read_text(encoding="utf-8")


async def test_ui_is_cached_for_a_year(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/widget/{widget.UI_NAME}")
    assert response.status_code == 200
    assert response.content == UI_PATH.read_bytes()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    cached = await client.get(
        f"/widget/{widget.UI_NAME}", headers={"if-none-match": response.headers["etag"]}
    )
    assert cached.status_code == 304


async def test_an_older_ui_build_is_sent_to_the_current_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget/chatlead-ui.OLDbuild42.js", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == widget.UI_NAME
    assert response.headers["cache-control"] == "no-cache"
    assert (await client.get("/widget/chatlead-ui.x.js")).status_code == 404


async def test_embed_url_is_short_cached_with_a_strong_etag(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget/chatlead.js", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert response.content == JS_PATH.read_bytes()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert "content-encoding" not in response.headers
    etag = response.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag), "strong, quoted"

    again = await client.get(
        "/widget/chatlead.js", headers={"accept-encoding": "identity", "if-none-match": etag}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=300"

    listed = await client.get(
        "/widget/chatlead.js",
        headers={"accept-encoding": "identity", "if-none-match": f'"nope", W/{etag}'},
    )
    assert listed.status_code == 304
    stale = await client.get(
        "/widget/chatlead.js", headers={"accept-encoding": "identity", "if-none-match": '"old"'}
    )
    assert stale.status_code == 200


async def test_gzip_is_served_precompressed_with_its_own_etag(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget/chatlead.js", headers={"accept-encoding": "gzip, br"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == JS_PATH.read_bytes()  # decoded by the client
    identity = await client.get("/widget/chatlead.js", headers={"accept-encoding": "identity"})
    assert response.headers["etag"] != identity.headers["etag"]
    cached = await client.get(
        "/widget/chatlead.js",
        headers={"accept-encoding": "gzip", "if-none-match": response.headers["etag"]},
    )
    assert cached.status_code == 304


async def test_versioned_url_is_cached_for_a_year(client: httpx.AsyncClient) -> None:
    version = hashlib.sha256(JS_PATH.read_bytes()).hexdigest()[:10]
    assert widget.versioned_path() == f"/widget/chatlead.{version}.js"
    response = await client.get(f"/widget/chatlead.{version}.js")
    assert response.status_code == 200
    assert response.content == JS_PATH.read_bytes()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    cached = await client.get(
        f"/widget/chatlead.{version}.js", headers={"if-none-match": response.headers["etag"]}
    )
    assert cached.status_code == 304


@pytest.mark.parametrize("version", ["0123456789", "latest", "a" * 64])
async def test_unknown_version_is_404(client: httpx.AsyncClient, version: str) -> None:
    assert (await client.get(f"/widget/chatlead.{version}.js")).status_code == 404


async def test_head_is_answered(client: httpx.AsyncClient) -> None:
    response = await client.head("/widget/chatlead.js", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert response.content == b""


async def test_demo_embeds_the_versioned_widget_for_the_default_site(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/demo")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    tag = re.search(r"<script src=\"([^\"]+)\" data-site=\"([^\"]+)\"", response.text)
    assert tag is not None
    assert tag.groups() == (widget.versioned_path(), "acme")
    assert (await client.get(tag.group(1))).status_code == 200


async def test_the_root_sends_a_new_user_to_the_demo(client: httpx.AsyncClient) -> None:
    response = await client.get("/", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "demo"


async def test_demo_takes_a_site_from_the_query(client: httpx.AsyncClient) -> None:
    assert 'data-site="other-site"' in (await client.get("/demo?site=other-site")).text
    assert (await client.get("/demo?site=%22%3E%3Cscript%3E")).status_code == 400


async def test_demo_without_app_state_uses_the_default_site() -> None:
    async with client_for(Starlette(routes=widget.routes)) as client:
        assert 'data-site="default"' in (await client.get("/demo")).text


def test_demo_page_function_rejects_bad_ids() -> None:
    assert 'data-site="acme"' in widget.demo_page("acme").body.decode()
    with pytest.raises(ValueError):
        widget.demo_page("<acme>")


def test_demo_is_self_contained() -> None:
    page = (widget.STATIC_DIR / "demo.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no CDN or remote assets"


def test_demo_says_its_chat_is_a_script() -> None:
    page = (widget.STATIC_DIR / "demo.html").read_text(encoding="utf-8")
    assert "scripted assistant" in page and "Automated assistant" in page
    assert "real people" not in page.lower() and "reply within" not in page


@pytest.mark.parametrize("path", [JS_PATH, UI_PATH], ids=["loader", "ui"])
def test_widget_never_parses_markup_from_text(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    # the one innerHTML in each is a static shell (icons only), set before any data exists
    assert source.count("innerHTML") == 1
    for sink in ("outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/demo"),
        ("GET", "/"),
        ("GET", "/widget/chatlead.js"),
        ("GET", f"/widget/chatlead.{widget.SCRIPT.version}.js"),
        ("GET", f"/widget/{widget.UI_NAME}"),
        ("GET", "/widget/chatlead.0000000000.js"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/api/deliveries"),
        ("GET", "/admin"),
        ("GET", "/nothing-here"),
        ("POST", "/healthz"),
        ("GET", "/ws"),
    ],
)
async def test_every_http_response_says_nosniff_once(
    app_factory: Any, method: str, path: str
) -> None:
    app = await app_factory()
    async with httpx.AsyncClient(base_url=app.base) as http:
        response = await http.request(method, path)
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], response


def _csp(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


async def test_demo_policy_allows_its_own_script_socket_and_no_framing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/demo")
    csp = _csp(response.headers["content-security-policy"])
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert len(inline) == 1 and csp["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert csp["default-src"] == ["'none'"] and csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
async def test_demo_chat_works_in_chromium_with_no_policy_violation(process_factory: Any) -> None:
    async_api = pytest.importorskip("playwright.async_api")
    server = process_factory().start()
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.on("pageerror", lambda exc: console.append(str(exc)))
            await page.add_init_script(
                "window.__violations = [];"
                "document.addEventListener('securitypolicyviolation',"
                " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            response = await page.goto(f"{server.base}/demo")
            assert response is not None and "content-security-policy" in response.headers
            await page.get_by_role("button", name="Get a free quote in chat").click()
            await page.get_by_text("What's your name?").wait_for(timeout=10_000)
            name = page.get_by_label("Your name", exact=True)
            await name.fill("Ada Lovelace")
            await name.press("Enter")
            await page.get_by_text("What's the best email to reach you?").wait_for(timeout=10_000)
            violations = await page.evaluate("window.__violations")
        finally:
            await browser.close()
    assert violations == [] and not [line for line in console if "Content Security" in line], (
        violations,
        console,
    )
    assert await wait_for(lambda: "session_started" in server.output(), 5)
