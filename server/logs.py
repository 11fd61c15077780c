"""Logging: one line per event, ``event key=value ...``, or JSON; secrets redacted.

Every handler gets :class:`Redact`, so no record — ours, uvicorn's, httpx's — can
print a signing secret, a bearer token, a CRM credential or a Redis password.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

__all__ = ["Redact", "JsonFormatter", "configure", "redact"]

_SECRETS = [
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_***"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1***"),
    (
        re.compile(
            r"(?i)([\"']?(?:api_?key|api_?secret|token|password|secret|access_?token)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(x-pw-accesstoken[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+", re.I), r"\1***"),
    (re.compile(r"((?:redis|rediss|unix)://[^:/@\s]*:)[^@\s]+@"), r"\1***@"),
]


def redact(text: str) -> str:
    """``text`` with every secret-looking value masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", <key>: <value>...}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        event, _, rest = record.getMessage().partition(" ")
        body: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        for part in rest.split():
            key, sep, value = part.partition("=")
            if sep:
                body[key if key not in body else f"{key}_"] = value
            else:
                body.setdefault("text", "")
                body["text"] = f"{body['text']} {part}".strip()
        if record.exc_info:
            body["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(body, ensure_ascii=False)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """Set up the root logger once; uvicorn's loggers propagate to it.

    Except its access log, which stays off, in worker processes too (they call this
    after uvicorn has set ``access_log=False`` up): it writes every client's address.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redact())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = name != "uvicorn.access"
    logging.getLogger("httpx").setLevel(logging.WARNING)
