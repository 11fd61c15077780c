from __future__ import annotations

import json
import logging

import pytest

from server.logs import JsonFormatter, Redact, configure, redact


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
