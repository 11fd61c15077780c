"""The deployment examples, run for real: examples/nginx/chatlead.conf in front of
``chatlead serve`` over TLS, and examples/systemd/chatlead.service through
``systemd-analyze``.

nginx is Debian's binary, run in the foreground on loopback ports with a config
rendered from the example (only ports, addresses and certificate paths replaced)
and a throwaway certificate authority from ``trustme``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trustme
import websockets

from tests.conftest import FULL_CONVERSATION, ROOT, ServerProcess, Visitor, free_port

pytestmark = pytest.mark.slow

NGINX_EXAMPLE = ROOT / "examples" / "nginx" / "chatlead.conf"
UNIT_EXAMPLE = ROOT / "examples" / "systemd" / "chatlead.service"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
)
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
TOKEN = "deployment-test-admin-token-0123456789"
SHOP = "https://shop.example"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def render_nginx_site(
    example: str, *, http_port: int, https_port: int, upstream_port: int, cert: Path, key: Path
) -> str:
    """The example site file with this machine's ports and paths, nothing else changed."""
    v6 = _ipv6_loopback()
    listen = {"80": http_port, "443": https_port}

    def ipv4(match: re.Match[str]) -> str:
        return f"listen 127.0.0.1:{listen[match.group(1)]}"

    def ipv6(match: re.Match[str]) -> str:
        return f"listen [::1]:{listen[match.group(1)]}" if v6 else "# listen (no IPv6)"

    text = re.sub(r"listen \[::\]:(80|443)\b", ipv6, example)
    text = re.sub(r"listen (80|443)\b", ipv4, text)
    text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    text = re.sub(r"ssl_certificate /\S+;", f"ssl_certificate {cert};", text)
    text = re.sub(r"ssl_certificate_key /\S+;", f"ssl_certificate_key {key};", text)
    assert text.count(str(https_port)) == 1 + v6 and str(upstream_port) in text
    return text


def nginx_main_conf(prefix: Path, site: Path) -> str:
    """The surroundings Debian's /etc/nginx/nginx.conf gives a sites-enabled file."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # as root the workers would switch to nobody, who cannot enter a private tmp dir
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log off;\n{temp}\n"
        f"    include {site};\n"
        "}\n"
    )


@dataclass
class Stack:
    """chatlead behind nginx: what a visitor and an admin reach over TLS."""

    https: str
    wss: str
    http: str
    ssl: ssl.SSLContext
    server: ServerProcess
    nginx_log: Path


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nginx not listening: {log.read_text(errors='replace')}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[Stack]:
    if NGINX is None:
        pytest.skip("nginx not installed (Debian package nginx; .ci/run installs it)")
    redis.Redis.from_url(redis_url).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATLEAD_")}
    env.update(
        CHATLEAD_REDIS_URL=redis_url,
        CHATLEAD_ADMIN_TOKEN=TOKEN,
        CHATLEAD_ALLOWED_ORIGINS=SHOP,
    )
    server = ServerProcess(env, free_port())
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    # a directory of our own under /tmp: pytest's tmp_path is not module-scoped
    prefix = Path(tempfile.mkdtemp(prefix="chatlead-nginx-"))
    try:
        server.start("serve")
        cert_file, key_file = prefix / "fullchain.pem", prefix / "privkey.pem"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_file))
        http_port, https_port = free_port(), free_port()
        site = prefix / "chatlead.conf"
        site.write_text(
            render_nginx_site(
                NGINX_EXAMPLE.read_text(),
                http_port=http_port,
                https_port=https_port,
                upstream_port=server.port,
                cert=cert_file,
                key=key_file,
            )
        )
        main_conf = prefix / "nginx.conf"
        main_conf.write_text(nginx_main_conf(prefix, site))
        log = prefix / "nginx.out"
        args = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(main_conf)]
        checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=20)
        assert checked.returncode == 0, checked.stderr
        with open(log, "wb") as out:
            nginx = subprocess.Popen(
                [*args, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            _wait_listening(https_port, nginx, log)
            context = ssl.create_default_context()
            ca.configure_trust(context)
            yield Stack(
                https=f"https://127.0.0.1:{https_port}",
                wss=f"wss://127.0.0.1:{https_port}/ws",
                http=f"http://127.0.0.1:{http_port}",
                ssl=context,
                server=server,
                nginx_log=prefix / "error.log",
            )
        finally:
            nginx.terminate()
            nginx.wait(10)
    finally:
        server.terminate()
        shutil.rmtree(prefix, ignore_errors=True)


async def _chat(url: str, context: ssl.SSLContext, origin: str) -> Visitor:
    async with websockets.connect(f"{url}?site=default", ssl=context, origin=origin) as ws:  # type: ignore[arg-type]
        visitor = Visitor(ws)
        await visitor.send({"type": "hello", "site": "default"})
        visitor.welcome = await visitor.expect("welcome")
        for name, value in FULL_CONVERSATION:
            assert (await visitor.field(name, value))["type"] == "ack"
        assert (await visitor.expect("lead"))["status"] == "completed"
    return visitor


async def test_a_chat_over_wss_through_nginx(stack: Stack) -> None:
    visitor = await _chat(stack.wss, stack.ssl, SHOP)
    assert visitor.welcome["status"] == "open"
    assert visitor.welcome["prompt"] == {"field": "name", "kind": "name"}
    # the server's own origin (the /demo page) is https://host:port as the browser
    # sees it: the proxy passed on Host with its port and X-Forwarded-Proto
    await _chat(stack.wss, stack.ssl, stack.https)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await _chat(stack.wss, stack.ssl, "https://evil.example")
    assert refused.value.response.status_code == 403


async def test_http_redirects_and_body_cap(stack: Stack) -> None:
    async with httpx.AsyncClient(verify=stack.ssl) as client:
        plain = await client.get(f"{stack.http}/demo?x=1")
        assert plain.status_code == 301
        assert plain.headers["location"] == "https://127.0.0.1/demo?x=1"
        demo = await client.get(f"{stack.https}/demo")
        assert demo.status_code == 200 and "chatlead" in demo.text
        assert demo.headers["strict-transport-security"].startswith("max-age=")
        scraper = {"authorization": f"Bearer {TOKEN}"}  # nginx allows loopback only
        metrics = await client.get(f"{stack.https}/metrics", headers=scraper)
        assert metrics.status_code == 200 and "chatlead_connections" in metrics.text
        huge = await client.post(f"{stack.https}/admin/login", content=b"x" * (2 << 20))
        assert huge.status_code == 413 and "nginx" in huge.text


async def test_admin_sign_in_over_https_through_nginx(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.https, verify=stack.ssl) as browser:
        form = await browser.get("/admin/login")
        assert form.status_code == 200
        match = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert match, form.text
        csrf = match.group(1)
        assert browser.cookies.get("chatlead_csrf") == csrf
        # the app saw https (X-Forwarded-Proto from a trusted 127.0.0.1): Secure cookies
        set_cookie = form.headers["set-cookie"]
        assert "chatlead_csrf=" in set_cookie and "secure" in set_cookie.lower()
        login = await browser.post(
            "/admin/login",
            data={"token": TOKEN, "csrf": csrf},
            headers={"origin": stack.https},
        )
        assert login.status_code == 303, login.text
        assert login.headers["location"] == "/admin"
        admin_cookie = next(
            h for h in login.headers.get_list("set-cookie") if h.startswith("chatlead_admin=")
        )
        assert "secure" in admin_cookie.lower()
        dashboard = await browser.get(login.headers["location"])
        assert dashboard.status_code == 200 and "Sign out" in dashboard.text


# --- systemd ------------------------------------------------------------------


def _unit_copy(directory: Path) -> Path:
    """The example unit with ExecStart pointing at this checkout's chatlead."""
    chatlead = Path(sys.executable).with_name("chatlead")
    assert chatlead.exists(), f"{chatlead} (pip install -e . in this venv)"
    text = UNIT_EXAMPLE.read_text()
    assert "ExecStart=/opt/chatlead/bin/chatlead serve" in text
    unit = directory / "chatlead.service"
    unit.write_text(text.replace("/opt/chatlead/bin/chatlead", str(chatlead)))
    return unit


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    # --man=no: no man pages in this image; verify needs no running systemd
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, cwd="/"
    )


def test_systemd_unit_verifies_clean(tmp_path: Path) -> None:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    unit = _unit_copy(tmp_path)
    verified = _analyze("verify", "--man=no", str(unit))
    # verify exits 0 on unknown keys and bad values too, with a warning: none allowed
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
    text = UNIT_EXAMPLE.read_text()
    for option in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=chatlead",
        "Restart=on-failure",
        "EnvironmentFile=/etc/chatlead/chatlead.env",
    ):
        assert re.search(rf"^{re.escape(option)}$", text, re.M), option


def test_systemd_unit_exposure_is_low(tmp_path: Path) -> None:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    unit = _unit_copy(tmp_path)
    # exposure 0.0 (locked down) .. 10.0 (unprotected); --threshold counts tenths
    security = _analyze("security", "--offline=yes", "--threshold=20", str(unit))
    assert security.returncode == 0, security.stdout[-3000:] + security.stderr
    level: Any = re.search(
        r"Overall exposure level for chatlead.service: ([\d.]+)", security.stdout
    )
    assert level and float(level.group(1)) <= 2.0, security.stdout[-500:]
