"""Attacks on the admin surface, each against a real server on real Redis: huge request
bodies, token guessing, a cookie replayed after sign-out, no ADMIN_TOKEN behind a proxy,
login links, and Redis going away; plus the pure rules behind them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.admin import auth
from chatlead.app import BODY_MAX, FORM_BODY_MAX, body_cap

from tests.conftest import ROOT, OwnRedis, admin_headers, admin_url, free_port

TOKEN = "auth-test-admin-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}
FORM = "application/x-www-form-urlencoded"


# --- pure rules -------------------------------------------------------------------


def test_body_caps_follow_the_content_type() -> None:
    assert body_cap([(b"content-type", FORM.encode())]) == (FORM_BODY_MAX, None)
    assert body_cap([(b"content-type", b"multipart/form-data; boundary=x")])[0] == FORM_BODY_MAX
    assert body_cap([(b"content-type", b"application/json")]) == (BODY_MAX, None)
    assert body_cap([(b"content-length", b"12")]) == (BODY_MAX, 12)
    assert body_cap([(b"content-length", b"-1")])[1] == BODY_MAX + 1  # malformed: refused


def test_cookie_is_bound_to_token_expiry_and_generation() -> None:
    cookie = auth.login_cookie(TOKEN, 3, 1_000)
    ok = auth.decide(TOKEN, authorization=None, cookie=cookie, generation=3, now_s=1_000)
    assert ok.ok and ok.via == "cookie"
    for token, generation, now in ((TOKEN, 4, 1_000), (TOKEN + "x", 3, 1_000), (TOKEN, 3, 10**6)):
        late = auth.decide(
            token, authorization=None, cookie=cookie, generation=generation, now_s=now
        )
        assert late.status == 401 and not late.failed  # a lapsed cookie is no guess


def test_only_wrong_credentials_count_as_failures() -> None:
    def verdict(authorization: str | None) -> auth.Verdict:
        return auth.decide(TOKEN, authorization=authorization, cookie=None, generation=0, now_s=0)

    assert verdict(f"Bearer {TOKEN}").via == "bearer"
    assert verdict("Bearer a").failed and verdict(f"Basic {TOKEN}").failed
    assert verdict(None).status == 401 and not verdict(None).failed
    assert not auth.throttled(auth.MAX_FAILURES) and auth.throttled(auth.MAX_FAILURES + 1)
    assert [auth.retry_after_s(ms) for ms in (-2, 1, 999, 1000, 59_001)] == [1, 1, 1, 1, 60]


# --- request bodies -----------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _chunked_post(port: int, path: str, total: int, content_type: str) -> str:
    """Send ``total`` bytes as a chunked body (no Content-Length); the status line back."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n" % (1 << 20) + b"t" * (1 << 20) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += 1 << 20
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may hang up once it has answered
        return sock.recv(200).decode(errors="replace").split("\r\n")[0]


def test_login_body_attack_keeps_the_server_small(process_factory: Any) -> None:
    """Four chunked 768 MiB bodies (no Content-Length) to the unauthenticated login, at
    once: each gets 413 and the server stays within 50 MiB of its idle size."""
    server = process_factory().start()
    assert server.proc is not None
    httpx.get(server.base + "/admin/login")  # warm: the first page renders templates
    idle = _rss_kib(server.proc.pid)
    peak, done = idle, threading.Event()

    def watch() -> None:
        nonlocal peak
        assert server.proc is not None
        while not done.is_set():
            peak = max(peak, _rss_kib(server.proc.pid))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    results: list[str] = []
    started = time.monotonic()
    attackers = [
        threading.Thread(
            target=lambda: results.append(
                _chunked_post(server.port, "/admin/login", 768 << 20, FORM)
            )
        )
        for _ in range(4)
    ]
    for thread in attackers:
        thread.start()
    for thread in attackers:
        thread.join(120)
    done.set()
    watcher.join()
    took = time.monotonic() - started
    print(
        f"login body attack: idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, {took:.1f} s"
    )
    assert results == ["HTTP/1.1 413 Request Entity Too Large"] * 4
    assert peak - idle < 50 * 1024, (idle, peak)
    assert httpx.get(server.base + "/healthz").status_code == 200


async def test_json_over_a_mebibyte_to_the_api_is_413(app_factory: Any) -> None:
    app = await app_factory(admin_token=TOKEN)
    big = json.dumps({"pad": "x" * BODY_MAX}).encode()

    async def chunks() -> Any:
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    headers = {**BEARER, "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=app.base, timeout=30) as http:
        for body in (big, chunks()):
            answer = await http.post("/api/sites/default/test-event", content=body, headers=headers)
            assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large"
        # before authentication: no token needed to be refused
        anonymous = await http.post("/api/deliveries/x/replay", content=chunks())
        assert anonymous.status_code == 413
        small = await http.post("/api/sites/default/test-event", content=b"{}", headers=headers)
        assert small.status_code == 202


# --- token guessing ------------------------------------------------------------------


async def test_guessing_is_throttled_per_client_network(
    app_factory: Any, rds: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app = await app_factory(admin_token=TOKEN)
    caplog.set_level(logging.INFO, logger="chatlead.auth")
    async with httpx.AsyncClient(base_url=app.base) as http:
        for n in range(auth.MAX_FAILURES):
            wrong = await http.get("/api/deliveries", headers={"authorization": f"Bearer a{n}"})
            assert wrong.status_code == 401
        throttled = await http.get("/api/deliveries", headers={"authorization": "Bearer a"})
        assert throttled.status_code == 429 and throttled.json()["error"] == "too_many_attempts"
        assert 1 <= int(throttled.headers["retry-after"]) <= auth.FAILURE_WINDOW_S
        # every admin request from that network, the right token included
        for path in ("/api/deliveries", "/admin", "/admin/inbox", "/admin/login", "/metrics"):
            answer = await http.get(path, headers=BEARER)
            assert answer.status_code == 429 and "retry-after" in answer.headers, path
        # another client (uvicorn trusts X-Forwarded-For from loopback) is not throttled
        other = {**BEARER, "x-forwarded-for": "203.0.113.7"}
        assert (await http.get("/api/deliveries", headers=other)).status_code == 200
        # the window passes
        await rds.pexpire(keys.auth_failures("127.0.0.1"), 1)
        await asyncio.sleep(0.05)
        assert (await http.get("/api/deliveries", headers=BEARER)).status_code == 200

    lines = [r.getMessage() for r in caplog.records if "admin_auth_throttled" in r.getMessage()]
    assert lines == ["admin_auth_throttled failures=21 window_s=60"]


async def test_sign_in_form_guessing_is_throttled(app_factory: Any) -> None:
    app = await app_factory(admin_token=TOKEN)
    headers = {"x-forwarded-for": "198.51.100.5", "cookie": "chatlead_csrf=c"}
    async with httpx.AsyncClient(base_url=app.base, headers=headers) as browser:
        statuses = [
            (await browser.post("/admin/login", data={"token": f"guess{n}", "csrf": "c"}))
            for n in range(auth.MAX_FAILURES + 1)
        ]
        assert [s.status_code for s in statuses] == [401] * auth.MAX_FAILURES + [429]
        assert "Too many attempts" in statuses[-1].text
        right = await browser.post("/admin/login", data={"token": TOKEN, "csrf": "c"})
        assert right.status_code == 429 and "chatlead_admin" not in browser.cookies


async def test_a_cookie_replayed_after_sign_out_is_refused(app_factory: Any) -> None:
    app = await app_factory(admin_token=TOKEN)
    async with httpx.AsyncClient(base_url=app.base) as browser:
        csrf = (await browser.get("/admin/login")).cookies["chatlead_csrf"]
        login = await browser.post("/admin/login", data={"token": TOKEN, "csrf": csrf})
        assert login.status_code == 303
        stolen = browser.cookies["chatlead_admin"]
        assert (await browser.get("/admin/inbox")).status_code == 200
        logout = await browser.post("/admin/logout", data={"csrf": csrf})
        assert logout.status_code == 303
    async with httpx.AsyncClient(base_url=app.base, cookies={"chatlead_admin": stolen}) as thief:
        assert (await thief.get("/admin/inbox")).status_code == 401
        assert (await thief.get("/api/reports/abandoned?format=csv")).status_code == 401


def test_short_admin_tokens_stop_check_and_serve(process_factory: Any) -> None:
    for command in (["check"], ["serve", "--port", str(free_port())]):
        proc = process_factory(admin_token="a" * 23)
        result = subprocess.run(
            [sys.executable, "-m", "chatlead", *command],
            env=proc.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "CHATLEAD_ADMIN_TOKEN" in lines[0] and "24" in lines[0] and "a" * 23 not in lines[0]


# --- no ADMIN_TOKEN -------------------------------------------------------------------


async def test_without_token_a_login_link_signs_in_once(app_factory: Any, redis_url: str) -> None:
    app = await app_factory(admin_token=None)
    async with httpx.AsyncClient(base_url=app.base) as anonymous:
        # a reverse proxy on this host: loopback peer, its own Host, no X-Forwarded-For
        for path in ("/admin", "/admin/inbox", "/api/inbox", "/metrics"):
            answer = await anonymous.get(path, headers={"host": "leads.example.com"})
            assert answer.status_code == 401, path
        page = await anonymous.get("/admin")
        assert "chatlead admin-url" in page.text and "Agent token" in page.text

    link = admin_url(redis_url, app.base)
    assert re.fullmatch(re.escape(app.base) + r"/admin/login\?code=[\w-]{20,}", link)
    async with httpx.AsyncClient() as browser:
        signed = await browser.get(link)
        assert signed.status_code == 303 and signed.headers["location"] == "/admin"
        assert (await browser.get(app.base + "/admin/inbox")).status_code == 200
    async with httpx.AsyncClient() as second:
        again = await second.get(link)  # single use
        assert again.status_code == 401 and "not valid" in again.text
        assert "chatlead_admin" not in second.cookies
        bogus = await second.get(app.base + "/admin/login?code=nope")
        assert bogus.status_code == 401 and "chatlead admin-url" in bogus.text
    token = admin_headers(redis_url)["authorization"].removeprefix("Bearer ")
    assert token not in link and len(token) >= 32


async def test_login_codes_expire(app_factory: Any, rds: aioredis.Redis) -> None:
    app = await app_factory(admin_token=None)
    creds = auth.Credentials(rds, None)
    code = await creds.new_code()
    (key,) = await rds.keys(keys.login_code("*"))
    assert 0 < await rds.ttl(key) <= auth.LOGIN_CODE_TTL_S
    await rds.pexpire(key, 1)
    await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=app.base) as browser:
        assert (await browser.get(f"/admin/login?code={code}")).status_code == 401


def test_serve_prints_a_login_link_that_opens_the_inbox(
    process_factory: Any, tmp_path: Path
) -> None:
    """The README's first command, on the embedded server: one click to the inbox."""
    server = process_factory(redis=None, data_dir=str(tmp_path / "data")).start()
    lines = server.output().splitlines()
    opened = [line.split(" open ", 1)[1] for line in lines if " open " in line]
    assert [entry.split("=", 1)[0] for entry in opened] == [
        "demo",
        "admin",
        "widget",
        "admin_login",
    ]
    link = opened[-1].split("=", 1)[1]
    assert link.startswith(f"http://127.0.0.1:{server.port}/admin/login?code=")
    with httpx.Client(follow_redirects=True) as browser:
        inbox = browser.get(link)
        assert inbox.status_code == 200 and "Dashboard" in inbox.text
        assert browser.get(f"{server.base}/admin/inbox").status_code == 200
    # chatlead admin-url finds the running server's embedded Redis
    result = subprocess.run(
        [sys.executable, "-m", "chatlead", "admin-url", "--base", server.base],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    with httpx.Client() as other:
        assert other.get(result.stdout.strip()).status_code == 303


# --- Redis outage ---------------------------------------------------------------------


async def test_a_redis_outage_is_a_503(app_factory: Any, own_redis: OwnRedis) -> None:
    app = await app_factory(redis_url=own_redis.url, admin_token=TOKEN)
    async with httpx.AsyncClient(base_url=app.base, headers=BEARER, timeout=30) as http:
        assert (await http.get("/admin/inbox")).status_code == 200
        own_redis.kill()
        for path in ("/admin", "/admin/inbox", "/admin/sessions", "/admin/deliveries"):
            page = await http.get(path)
            assert page.status_code == 503 and "Redis is unavailable" in page.text, path
        assert (await http.get("/admin/login")).status_code == 503
        for path in ("/api/inbox", "/api/deliveries", "/api/sessions"):
            answer = await http.get(path)
            assert answer.status_code == 503, path
            assert answer.json()["error"] == "store_unavailable"
