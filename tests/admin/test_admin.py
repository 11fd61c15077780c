"""The admin pages against the real server: numbers, escaping, login cookie and CSRF,
forms, the inbox and session list; the pure CSRF rule and chart axes. Clicking through
the pages in Chromium is ``test_admin_browser.py``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from chatlead.admin import auth, charts
from chatlead.admin.seed import seed
from chatlead.admin.summary import DayCount, StepDropOff
from markupsafe import escape

from tests.admin.serving import TOKEN, Served, eventually, visit, wait_delivery, wait_status

on_module_loop = pytest.mark.asyncio(loop_scope="module")

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _kpis(page: str) -> dict[str, str]:
    pairs = re.findall(r'<div class="label">([^<]+)</div><div class="value">([^<]+)</div>', page)
    return {label: value for label, value in pairs}


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has a CSRF field"
    return match.group(1)


OWN = "http://127.0.0.1:8000"


def _problem(origin: str | None, fetch_site: str | None, given: str | None = "t") -> str | None:
    return auth.csrf_problem(
        method="POST",
        via="cookie",
        origin=origin,
        fetch_site=fetch_site,
        own_origin=OWN,
        cookie_token="t",
        given_token=given,
    )


@pytest.mark.parametrize(
    ("origin", "fetch_site", "given", "refused"),
    [
        (OWN, "same-origin", "t", None),
        (OWN + "/", None, "t", None),
        # a browser whose referrer policy hides the origin still vouches for it
        ("null", "same-origin", "t", None),
        ("null", "same-origin", "x", "CSRF token mismatch"),
        ("null", "same-origin", None, "missing CSRF token"),
        ("null", "cross-site", "t", "cross-origin"),
        ("null", "same-site", "t", "cross-origin"),
        ("null", None, "t", "cross-origin"),
        ("https://evil.example", "cross-site", "t", "cross-origin"),
        ("http://127.0.0.1:8001", "same-site", "t", "cross-origin"),
        (None, "cross-site", "t", "cross-site"),
    ],
)
def test_csrf_accepts_same_origin_posts_only(
    origin: str | None, fetch_site: str | None, given: str | None, refused: str | None
) -> None:
    problem = _problem(origin, fetch_site, given)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem


def test_chart_axes_count_in_whole_numbers() -> None:
    assert charts.count_ticks(0) == [0, 1]
    assert charts.count_ticks(3) == [0, 1, 2, 3]
    assert charts.count_ticks(7) == [0, 2, 4, 6, 8]
    assert charts.count_ticks(24) == [0, 5, 10, 15, 20, 25]
    assert charts.count_ticks(1234) == [0, 500, 1000, 1500]
    for top in range(0, 2000, 7):
        ticks = charts.count_ticks(top)
        assert ticks[0] == 0 and ticks[-1] >= top and len(ticks) <= 6
    day = DayCount("2024-05-01", started=2, completed=1, abandoned=1, recovered=0)
    for svg in (
        charts.daily_chart([day, day]),
        charts.drop_off_chart([StepDropOff("name", "Name?", 2, 1)]),
    ):
        labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        numbers = [label for label in labels if re.fullmatch(r"[\d.,]+", label)]
        assert numbers and all("." not in label for label in numbers), numbers


@on_module_loop
async def test_dashboard_shows_the_api_numbers(served: Served, sync_redis: redis.Redis) -> None:
    seed(sync_redis, abandoned=120, completed=60, sites=["default"])
    report = (await served.http.get("/api/reports/abandoned", params={"since": "7d"})).json()
    summary = report["summary"]
    page = await served.http.get("/admin", params={"since": "7d"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    kpis = _kpis(page.text)
    assert kpis["Sessions started"] == str(summary["started"])
    assert kpis["Completed"] == str(summary["completed"])
    assert kpis["Abandoned"] == str(summary["abandoned"])
    assert kpis["Abandonment rate"] == f"{summary['abandonment_rate'] * 100:.1f} %"
    flat = re.sub(r">\s+<", "><", page.text)
    for step in summary["drop_off"]:
        row = (
            f'<th scope="row">{step["step"]}</th><td>{escape(step["question"])}</td>'
            f'<td class="num">{step["reached"]}</td><td class="num">{step["stopped"]}</td>'
        )
        assert row in flat
    # the first rows of the table are the API's first rows
    for row in report["items"][:5]:
        assert f'/admin/sessions/{row["session_id"]}"' in page.text
    assert page.text.count("<svg") == 2
    # one script, our own file: nothing inline (the charts carry none either)
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/admin/admin.js" defer>']
    assert 'href="/api/reports/abandoned?since=7d&amp;format=csv"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp
    assert page.headers["referrer-policy"] == "same-origin"
    script = await served.http.get("/admin/admin.js", headers={"authorization": ""})
    assert script.status_code == 200 and "DateTimeFormat" in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert page.headers["x-frame-options"] == "DENY"


@on_module_loop
async def test_visitor_text_is_escaped_everywhere(served: Served) -> None:
    sid = await visit(served, [("name", HOSTILE), ("email", "mallory@example.com")])
    await wait_status(served, sid, "abandoned")
    await wait_delivery(served, f"evt_{sid}_abandoned_1", "delivered")
    for path in ("/admin", f"/admin/sessions/{sid}", "/admin/inbox", "/admin/sessions"):
        page = (await served.http.get(path)).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert str(escape(HOSTILE)) in page, path
    session = (await served.http.get(f"/admin/sessions/{sid}")).text
    assert "mallory@example.com" in session and "Erase session" in session


@on_module_loop
async def test_pages_for_unknown_things_are_clear(served: Served) -> None:
    missing = await served.http.get("/admin/sessions/0123456789abcdef01234567")
    assert missing.status_code == 404 and "No such session" in missing.text
    bad = await served.http.get("/admin", params={"since": "whenever"})
    assert bad.status_code == 400 and "ISO-8601" in bad.text
    unknown = await served.http.get("/admin", params={"site": "<b>nope</b>"})
    assert unknown.status_code == 404 and "<b>nope</b>" not in unknown.text
    assert (await served.http.get("/admin/deliveries?status=x")).status_code == 400
    assert (await served.http.get("/admin/live", params={"session": "../x"})).status_code == 404


@on_module_loop
async def test_alert_links_open_the_session_after_sign_in(served: Served) -> None:
    sid = await visit(served, [("name", "Hal"), ("email", "hal@example.com")])
    live = await served.http.get("/admin/live", params={"session": sid})
    assert live.status_code == 200 and f'data-session="{sid}"' in live.text
    async with httpx.AsyncClient(base_url=served.url) as browser:
        first = await browser.get("/admin/live", params={"session": sid})
        assert first.status_code == 401
        csrf = _csrf(first.text)
        login = await browser.post(
            "/admin/login",
            data={"token": TOKEN, "csrf": csrf, "next": f"/admin/live?session={sid}"},
        )
        assert login.headers["location"] == f"/admin/live?session={sid}"
        assert f'value="/admin/live?session={sid}"' in first.text


@on_module_loop
async def test_login_cookie_and_csrf(served: Served) -> None:
    sid = await visit(served, [("name", "Hal"), ("email", "hal@example.com")])
    async with httpx.AsyncClient(base_url=served.url) as browser:
        first = await browser.get("/admin")
        assert first.status_code == 401 and 'name="token"' in first.text
        csrf = _csrf(first.text)
        assert browser.cookies.get("chatlead_csrf") == csrf

        wrong = await browser.post("/admin/login", data={"token": "nope", "csrf": csrf})
        assert wrong.status_code == 401 and "chatlead_admin" not in browser.cookies
        forged = await browser.post("/admin/login", data={"token": TOKEN, "csrf": "forged"})
        assert forged.status_code == 403

        login = await browser.post("/admin/login", data={"token": TOKEN, "csrf": csrf})
        assert login.status_code == 303 and login.headers["location"] == "/admin"
        cookie = next(h for h in login.headers.get_list("set-cookie") if "chatlead_admin=" in h)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
        page = await browser.get("/admin")
        assert page.status_code == 200 and "Sign out" in page.text
        # the CSV link works with the cookie, as a browser download would
        download = await browser.get("/api/reports/abandoned?format=csv")
        assert download.status_code == 200

        # cookie-authenticated changes need the CSRF token and our own origin
        test_event = "/admin/sites/default/test-event"
        assert (await browser.post(test_event)).status_code == 403
        cross = await browser.post(
            test_event, data={"csrf": csrf}, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        assert (await browser.delete(f"/api/sessions/{sid}")).status_code == 403
        sent = await browser.post(test_event, data={"csrf": csrf}, headers={"origin": served.url})
        assert sent.status_code == 303
        assert sent.headers["location"] == "/admin/deliveries?notice=test_sent"
        notice = await browser.get(sent.headers["location"])
        assert "A test event was queued" in notice.text

        logout = await browser.post("/admin/logout", data={"csrf": csrf})
        assert logout.status_code == 303
        assert (await browser.get("/admin")).status_code == 401


@on_module_loop
async def test_forms_are_capped_while_read(served: Served) -> None:
    """A chunked form (no Content-Length) is read up to 16 KiB, then refused with 413
    before the token or the CSRF token is looked at."""

    async def chunked(padding_kib: int) -> AsyncIterator[bytes]:
        yield f"csrf=c&token={TOKEN}&pad=".encode()
        for _ in range(padding_kib):
            yield b"p" * 1024

    headers = {"content-type": "application/x-www-form-urlencoded", "cookie": "chatlead_csrf=c"}
    async with httpx.AsyncClient(base_url=served.url) as browser:
        small = await browser.post("/admin/login", content=chunked(4), headers=headers)
        assert small.status_code == 303
        large = await browser.post("/admin/login", content=chunked(40), headers=headers)
        assert large.status_code == 413 and "chatlead_admin" not in large.headers.get(
            "set-cookie", ""
        )
        declared = await browser.post("/admin/login", content=b"x" * 20_000, headers=headers)
        assert declared.status_code == 413


@on_module_loop
async def test_replay_and_erase_forms(served: Served) -> None:
    sid = await visit(served, [("name", "Ivy"), ("email", "ivy@example.com")])
    await wait_status(served, sid, "abandoned")
    event_id = f"evt_{sid}_abandoned_1"
    await wait_delivery(served, event_id, "delivered")
    page = await served.http.get(f"/admin/sessions/{sid}")
    csrf = _csrf(page.text)
    cookies = {"chatlead_csrf": served.http.cookies.get("chatlead_csrf") or csrf}
    assert f'action="/admin/deliveries/{event_id}/replay"' in page.text

    replay = await served.http.post(
        f"/admin/deliveries/{event_id}/replay",
        data={"csrf": cookies["chatlead_csrf"], "back": f"/admin/sessions/{sid}"},
    )
    assert replay.status_code == 303
    assert replay.headers["location"] == f"/admin/sessions/{sid}?notice=replayed"

    async def replayed() -> bool:
        item: dict[str, Any] = (await served.http.get(f"/api/deliveries/{event_id}")).json()
        return item["status"] == "delivered" and len(item["attempts"]) == 2

    await eventually(replayed, what="the replay")
    # a `back` that leaves the admin is ignored
    away = await served.http.post(
        f"/admin/deliveries/{event_id}/replay",
        data={"csrf": cookies["chatlead_csrf"], "back": "//evil.example/x"},
    )
    assert away.headers["location"].startswith("/admin/deliveries?notice=")

    unconfirmed = await served.http.post(
        f"/admin/sessions/{sid}/erase", data={"csrf": cookies["chatlead_csrf"]}
    )
    assert unconfirmed.status_code == 400
    erased = await served.http.post(
        f"/admin/sessions/{sid}/erase", data={"csrf": cookies["chatlead_csrf"], "confirm": "yes"}
    )
    assert erased.status_code == 303 and erased.headers["location"] == "/admin?notice=erased"
    assert (await served.http.get(f"/api/sessions/{sid}")).status_code == 404
