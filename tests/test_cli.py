"""The ``chatlead`` command as a user runs it: real processes, real Redis, real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from chatlead.admin.deliveries import DeliveryAttempt, DeliveryItem
from chatlead.cli import _redis_verdict, _start_urls
from chatlead.cli_admin import first_attempt
from conftest import ROOT, SECRET, Receiver, hook_env


def chatlead(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``chatlead`` with only the ``CHATLEAD_*`` settings given (``data_dir=...``)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CHATLEAD_")}
    full.update({f"CHATLEAD_{k.upper()}": v for k, v in env.items()})
    return subprocess.run(
        [sys.executable, "-m", "chatlead", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def test_serve_on_a_busy_port_fails_fast_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        started = time.monotonic()
        result = chatlead("serve", "--port", str(port), data_dir=str(tmp_path / "data"))
        elapsed = time.monotonic() - started
    assert result.returncode != 0 and elapsed < 2, (elapsed, result.stderr)
    assert result.stderr.splitlines() == [
        f"chatlead: port {port} on 127.0.0.1 is already in use; "
        "stop the other server or pick another with --port"
    ]
    assert not (tmp_path / "data").exists() and processes_using(tmp_path) == []


def test_serve_warns_of_unknown_settings_before_anything_else(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = chatlead("serve", "--port", str(port), data_dir=str(tmp_path), idletimeout="5m")
    first, last = result.stderr.splitlines()
    assert "unknown_setting name=CHATLEAD_IDLETIMEOUT did_you_mean=CHATLEAD_IDLE_TIMEOUT" in first
    assert last.startswith(f"chatlead: port {port} on 127.0.0.1 is already in use")


@pytest.mark.parametrize("command", ["check", "serve"])
@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"webhook_secret": "supersecret"},
            "CHATLEAD_WEBHOOK_SECRET: a secret must look like whsec_<base64>",
        ),
        ({"webhook_format": "copper"}, "CHATLEAD_COPPER_API_KEY: required for format"),
        ({"webhook_format": "template"}, "CHATLEAD_WEBHOOK_TEMPLATE: required for format"),
        ({"site": "my site"}, "CHATLEAD_SITE: 'my site' is not a site id"),
        ({"idle_timeout": "15"}, "CHATLEAD_IDLE_TIMEOUT: 15 has no unit; write 15s, 15m or 15h"),
        ({"allowed_origins": "example.com"}, "CHATLEAD_ALLOWED_ORIGINS: 'example.com' has no"),
        ({"webhook_url": "hooks.example.com/leads"}, "CHATLEAD_WEBHOOK_URL: has no scheme"),
        (
            {"webhook_url": "http://localhost/leads", "webhook_secret": SECRET},
            "CHATLEAD_WEBHOOK_URL: http:// would send leads to localhost unencrypted",
        ),
        (
            {"webhook_url": "https://127.0.0.1:9/leads"},
            "CHATLEAD_WEBHOOK_URL: 127.0.0.1 is a loopback or private address (127.0.0.1); "
            "set CHATLEAD_WEBHOOK_ALLOW_PRIVATE=true",
        ),
    ],
)
def test_bad_settings_are_one_line_naming_the_variable(
    tmp_path: Path, command: str, env: dict[str, str], line: str
) -> None:
    extra = ("--port", "0") if command == "serve" else ()
    result = chatlead(command, *extra, data_dir=str(tmp_path), **env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"chatlead: {line}")
    assert "supersecret" not in result.stderr + result.stdout
    assert SECRET.removeprefix("whsec_") not in result.stderr + result.stdout


def test_a_file_site_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text("[sites.acme.webhook]\nurl = 'http://localhost:9/hook'\n")
    result = chatlead("check", "--config", str(path), data_dir=str(tmp_path))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert f"{path}: sites.acme.webhook.url: http://" in result.stderr
    assert "allow_private = true in [sites.acme.webhook]" in result.stderr


def test_check_shows_settings_with_secrets_masked_and_checks_redis(
    tmp_path: Path, redis_url: str
) -> None:
    token = "t0ken-" * 5
    result = chatlead(
        "check", redis_url=redis_url, admin_token=token, webhook_secret=SECRET, idletimeout="5m"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert "  CHATLEAD_ADMIN_TOKEN=***" in out and "  CHATLEAD_WEBHOOK_SECRET=***" in out
    assert "  CHATLEAD_IDLE_TIMEOUT=15m" in out and out[-1] == "ok"
    assert f"redis: {redis_url} reachable, Redis " in result.stdout
    assert "maxmemory-policy noeviction" in result.stdout
    assert token not in result.stdout + result.stderr
    assert SECRET.removeprefix("whsec_") not in result.stdout + result.stderr
    warning = [line for line in result.stderr.splitlines() if "unknown_setting" in line]
    assert len(warning) == 1 and "name=CHATLEAD_IDLETIMEOUT" in warning[0]
    assert "did_you_mean=CHATLEAD_IDLE_TIMEOUT" in warning[0]


def test_check_fails_when_redis_is_unreachable_and_names_the_embedded_server(
    tmp_path: Path,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = chatlead("check", redis_url=f"redis://:hunter2@127.0.0.1:{port}/0")
    assert result.returncode == 1 and result.stdout.splitlines()[-1] != "ok"
    assert f"redis: cannot reach redis://:***@127.0.0.1:{port}/0" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    result = chatlead("check", data_dir=str(tmp_path))
    assert result.returncode == 0
    assert f"embedded server in {tmp_path}" in result.stdout


def test_serve_with_redis_unreachable_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = chatlead("serve", "--port", "0", redis_url=f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"chatlead: redis: cannot reach redis://127.0.0.1:{port}/0: "
    )
    assert "Traceback" not in result.stderr


def test_redis_verdict_refuses_eviction() -> None:
    ok, line = _redis_verdict("redis://r", {"redis_version": "7.0.15"}, {"maxmemory_policy": "lru"})
    assert not ok and "maxmemory-policy lru; chatlead needs noeviction" in line
    ok, line = _redis_verdict("unix:///s", {"redis_version": "7.2", "valkey_version": "9.0.1"}, {})
    assert ok and "Valkey 9.0.1" in line


def test_help_is_plain_text() -> None:
    for args in ([], ["serve"], ["test-event"], ["check"]):
        result = chatlead(*args, "--help")
        assert result.returncode == 0 and "``" not in result.stdout, result.stdout
    assert "--forwarded-allow-ips" in chatlead("serve", "--help").stdout


def test_unknown_site_reads_the_same_everywhere(tmp_path: Path) -> None:
    expected = ["chatlead: no site 'nope'; known sites: default"]
    for args in (["test-event", "nope"], ["report", "abandoned", "--site", "nope"]):
        result = chatlead(*args, data_dir=str(tmp_path))
        assert result.returncode == 2 and result.stderr.splitlines() == expected


def test_start_logs_urls_and_the_embedded_server_and_test_event_reaches_the_inbox(
    tmp_path: Path, process_factory: Any
) -> None:
    data = tmp_path / "data"
    alone = chatlead("test-event", "default", data_dir=str(data))
    assert alone.returncode == 1
    assert "queued; no chatlead serve is running to deliver it" in alone.stderr
    server = process_factory(redis=None, data_dir=str(data))
    try:
        server.start("serve", "--forwarded-allow-ips", "10.0.0.1")
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/demo", "/admin", "/widget/chatlead.js"):
            assert f"={base}{path}\n" in server.output()
        assert "redis_embedded dir=" in server.output()
        result = chatlead("test-event", "default", data_dir=str(data))
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith(": delivered to the inbox (/admin/inbox)\n")
        assert "redis_embedded_running" in result.stderr and "redis_external" not in result.stderr
    finally:
        server.terminate()  # SIGTERM stops the embedded server too
    assert processes_using(data) == []


def test_test_event_waits_for_the_first_attempt_and_shows_it(
    process_factory: Any, receiver: Receiver, redis_url: str
) -> None:
    env = hook_env(receiver, retry_schedule="0,1h")
    process_factory(**env).start()
    settings = {"redis_url": redis_url, **env}
    delivered = chatlead("test-event", "default", **settings)
    assert delivered.returncode == 0, delivered.stderr
    assert ": delivered: HTTP 204 in " in delivered.stdout and receiver.events
    receiver.fail_next, receiver.fail_status = 1, 503
    retried = chatlead("test-event", "default", **settings)
    assert retried.returncode == 1 and ": failed: HTTP 503; will retry at " in retried.stderr
    receiver.fail_next, receiver.fail_status = 1, 400
    dead = chatlead("test-event", "default", **settings)
    assert dead.returncode == 1 and ": failed: HTTP 400 (dead; fix it, then " in dead.stderr


def _item(status: Literal["pending", "dead"], *attempts: DeliveryAttempt) -> DeliveryItem:
    return DeliveryItem(
        "evt_1", "lead.test", "s", "default", "webhook", status, list(attempts), "t0", None
    )


def test_first_attempt_lines() -> None:
    timeout = DeliveryAttempt("t1", None, 15000.0, "timeout")
    assert first_attempt(_item("pending"), 30) == (
        False,
        "queued, not attempted within 30 s; "
        "is chatlead serve or chatlead worker running on this Redis?",
    )
    assert first_attempt(_item("dead", timeout), 30)[1].startswith("failed: timeout (dead;")
    assert first_attempt(None, 30) == (False, "the event is gone (erased or expired)")


def test_start_urls_for_any_address() -> None:
    assert _start_urls("0.0.0.0", 80)[0] == ("demo", "http://127.0.0.1:80/demo")
    assert _start_urls("::", 8000)[1] == ("admin", "http://[::1]:8000/admin")
    assert _start_urls("chat.example", 8000)[2][1] == "http://chat.example:8000/widget/chatlead.js"
