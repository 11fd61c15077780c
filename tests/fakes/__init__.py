"""Fake third-party HTTP servers for tests: real sockets on 127.0.0.1, port 0.

Each fake is a :class:`FakeServer`: a threaded ``http.server`` whose ``handle``
method decides the answer and which records every request it saw, so a test
asserts on what the CRM (or receiver) observed.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["Answer", "FakeServer", "Seen"]


class _BurstServer(ThreadingHTTPServer):
    # http.server listens with a backlog of 5; a burst of new connections (the
    # delivery loop opens many at once) would wait seconds on SYN retransmits
    request_queue_size = 128


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    """``body`` is sent as JSON; ``text`` (when set) as ``text/plain`` instead."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None


class FakeServer:
    """Base class: override :meth:`handle`; use as a context manager."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                request = Seen(
                    self.command,
                    parts.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake.lock:
                    fake.seen.append(request)
                    answer = fake.handle(request)
                if answer.text is not None:
                    payload, kind = answer.text.encode(), "text/plain; charset=utf-8"
                else:
                    payload = b"" if answer.body is None else json.dumps(answer.body).encode()
                    kind = "application/json"
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if payload:
                    self.send_header("content-type", kind)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = _BurstServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, request: Seen) -> Answer:  # pragma: no cover - overridden
        raise NotImplementedError

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [
                r
                for r in self.seen
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
