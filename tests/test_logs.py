from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
from chatlead.logs import (
    ClientIp,
    JsonFormatter,
    Redact,
    client_network,
    configure,
    redact,
    rewrite_client_line,
)

from tests.conftest import Visitor, wait_for


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "Authorization: Bearer abc.def.ghi",
        '{"apiKey": "k-123", "apiSecret": "s-456"}',
        "X-PW-AccessToken: 9f8e7d",
        "redis://user:hunter2@redis.internal:6379/0",
        "token=abcdef",
    ],
)
def test_secrets_are_masked(secret: str) -> None:
    clean = redact(f"delivery failed: {secret}")
    for needle in ("MfKQ9r8G", "abc.def", "k-123", "s-456", "9f8e7d", "hunter2", "abcdef"):
        assert needle not in clean


def test_plain_text_is_left_alone() -> None:
    line = "delivery event=evt_0123_completed outcome=delivered status=204"
    assert redact(line) == line


def test_json_lines_carry_event_and_fields() -> None:
    record = logging.LogRecord(
        "chatlead.delivery",
        logging.INFO,
        __file__,
        1,
        "delivery id=%s outcome=%s secret=%s",
        ("evt_1", "dead", "whsec_abc"),
        None,
    )
    Redact().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "delivery" and line["outcome"] == "dead"
    assert line["logger"] == "chatlead.delivery" and line["level"] == "info"
    assert "abc" not in json.dumps(line)


def test_configure_keeps_the_access_log_off() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure()
        assert not logging.getLogger("uvicorn.access").hasHandlers()
        assert logging.getLogger("uvicorn.error").hasHandlers()
    finally:
        root.handlers[:], root.level = handlers, level


SECRETS_IN_ERROR = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "Bearer tok.en.value",
    "ada.lovelace@example.com",
    "redis://default:hunter2@redis.internal:6379/0",
)


def _fail_with_secrets() -> None:
    secret, bearer, email, url = SECRETS_IN_ERROR
    try:
        raise ConnectionError(f"cannot reach {url} for {email}")
    except ConnectionError as exc:
        raise RuntimeError(f"delivery with {secret} and {bearer} failed") from exc


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_tracebacks_are_redacted_in_both_formats(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure(fmt)
        try:
            _fail_with_secrets()
        except RuntimeError:
            logging.getLogger("chatlead.test").exception("delivery_failed id=evt_1")
    finally:
        root.handlers[:], root.level = handlers, level
    out = capsys.readouterr().err
    assert "Traceback" in out and "ConnectionError" in out and "delivery_failed" in out
    for needle in ("MfKQ9r8G", "tok.en.value", "ada.lovelace", "example.com", "hunter2"):
        assert needle not in out, (needle, out)
    assert "redis://default:***@redis.internal" in out


@pytest.mark.parametrize(
    ("msg", "args", "mode", "line"),
    [
        (
            '%s - "WebSocket %s" [accepted]',
            ("203.0.113.77:5555", "/ws?site=acme"),
            "off",
            "websocket_handshake path=/ws outcome=accepted",
        ),
        (
            '%s - "WebSocket %s" 403',
            ("203.0.113.77:5555", "/ws"),
            "truncated",
            "websocket_handshake path=/ws outcome=403 client=203.0.113.0/24",
        ),
        (
            '%s - "WebSocket %s" %d',
            ("2001:db8:abcd:12::7:5555", "/agent"),
            "truncated",
            "websocket_handshake path=/agent outcome=404 client=2001:db8:abcd::/48",
        ),
        (
            '%s - "%s %s HTTP/%s" %d',
            ("::ffff:198.51.100.9:40000", "GET", "/admin/login?code=x", "1.1", 200),
            "truncated",
            '"GET /admin/login?code=x HTTP/1.1" 200 client=198.51.100.0/24',
        ),
        ("ready sites=%s shards=%d", ("default", 16), "truncated", None),
    ],
)
def test_uvicorn_client_lines_lose_the_address(
    msg: str, args: tuple[object, ...], mode: ClientIp, line: str | None
) -> None:
    if "%d" in msg and len(args) == 2:
        args = (*args, 404)
    assert rewrite_client_line(msg, args, mode) == line


def test_client_network_is_nothing_unless_truncated() -> None:
    assert client_network("203.0.113.77", "off") is None
    assert client_network("203.0.113.77", "truncated") == "203.0.113.0/24"
    assert client_network("", "truncated") is None


def _get(port: int, path: str) -> int:
    """One HTTP request on a socket of its own; returns the client's port."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        while sock.recv(65536):
            pass
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("mode", ["off", "truncated"])
async def test_serve_logs_no_client_address(process_factory: Any, mode: str) -> None:
    server = process_factory(log_client_ip=mode).start()
    async with Visitor.connect(server.ws_url) as visitor:
        ports = [visitor.ws.local_address[1]]
        assert (await visitor.field("name", "Ada Lovelace"))["type"] == "ack"
    ports += [_get(server.port, path) for path in ("/healthz", "/demo", "/nope", "/metrics")]
    await wait_for(lambda: "websocket_handshake path=/ws outcome=accepted" in server.output())
    server.terminate()
    out = server.log.read_text()
    for port in ports:
        assert f":{port}" not in out, (port, out)
    assert '"WebSocket' not in out and "('127.0.0.1'" not in out
    assert ("client=127.0.0.0/24" in out) is (mode == "truncated")
