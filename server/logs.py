"""Logging: one line per event, ``event key=value ...``, or JSON; secrets redacted.

Every handler gets :class:`Redact`, so no record — ours, uvicorn's, httpx's — can
print a signing secret, a bearer token, a CRM credential, a Redis password or an
email address, in its message or in its traceback (both formats).

Client addresses stay out of the logs: uvicorn's per-connection WebSocket lines
(``('127.0.0.1', 5555) - "WebSocket /ws" [accepted]``) are rewritten by
:class:`ClientAddresses` as ``websocket_handshake path=/ws outcome=accepted``, with
``client=203.0.113.0/24`` (IPv4 /24, IPv6 /48) only under ``LOG_CLIENT_IP=truncated``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import time
from typing import Any, Literal

__all__ = [
    "ClientAddresses",
    "ClientIp",
    "JsonFormatter",
    "Redact",
    "TextFormatter",
    "client_network",
    "configure",
    "redact",
    "rewrite_client_line",
]

ClientIp = Literal["off", "truncated"]

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
    # personal data: a visitor's email address in an error message or a traceback
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "***@***"),
]
_CLIENT_PREFIX = '%s - "'
"""How uvicorn starts every line that names a client (``ip:port``, then the request)."""
_WEBSOCKET = '%s - "WebSocket %s" '


def redact(text: str) -> str:
    """``text`` with every secret-looking value masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def client_network(host: str, mode: ClientIp) -> str | None:
    """What a log line may show of a client's address: nothing, or its network.

    ``truncated`` keeps the IPv4 /24 or IPv6 /48 (an IPv4-mapped IPv6 address counts
    as IPv4); anything that is no IP address (a unix socket peer) shows nothing.
    """
    if mode == "off":
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network((ip, prefix), strict=False))


def rewrite_client_line(msg: str, args: tuple[object, ...], mode: ClientIp) -> str | None:
    """uvicorn's line naming a client, without the address (None: not such a line).

    ``args[0]`` is uvicorn's ``"ip:port"``. A WebSocket handshake line becomes
    ``websocket_handshake path=<path> outcome=<accepted|403|...>`` (the query string
    dropped: it may carry a code); any other keeps its text after the address.
    """
    if not msg.startswith(_CLIENT_PREFIX) or not args or not isinstance(args[0], str):
        return None
    network = client_network(args[0].rpartition(":")[0], mode)
    client = f" client={network}" if network else ""
    if msg.startswith(_WEBSOCKET) and len(args) >= 2:
        path = str(args[1]).partition("?")[0]
        outcome = (msg[len(_WEBSOCKET) :] % args[2:]).strip("[]")
        return f"websocket_handshake path={path} outcome={outcome}{client}"
    return (msg[len("%s - ") :] % args[1:]) + client


class ClientAddresses(logging.Filter):
    """Rewrites uvicorn's client lines (:func:`rewrite_client_line`) before they are written."""

    def __init__(self, mode: ClientIp = "off") -> None:
        super().__init__()
        self.mode: ClientIp = mode

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and isinstance(record.args, tuple):
            line = rewrite_client_line(record.msg, record.args, self.mode)
            if line is not None:
                record.msg, record.args = line, None
        return True


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class TextFormatter(logging.Formatter):
    """``<time> <level> <logger> <message>``; tracebacks redacted like messages."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


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
        if record.stack_info:
            body["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(body, ensure_ascii=False)


def configure(fmt: str = "text", level: int = logging.INFO, client_ip: ClientIp = "off") -> None:
    """Set up the root logger once; uvicorn's loggers propagate to it.

    Except its access log, which stays off, in worker processes too (they call this
    after uvicorn has set ``access_log=False`` up): it writes every client's address,
    and a proxy in front keeps one already.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ClientAddresses(client_ip))  # first: Redact formats the message
    handler.addFilter(Redact())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = name != "uvicorn.access"
    logging.getLogger("httpx").setLevel(logging.WARNING)
