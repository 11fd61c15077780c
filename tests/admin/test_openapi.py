"""``GET /openapi.json``: a valid OpenAPI 3.1 document, and the live API keeps its word
(schemathesis against the real server on a loopback port, a few examples each)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from chatlead.admin.openapi import document
from chatlead.app import create_app
from chatlead.config import Settings
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.admin.serving import DELIVERY_KEYS, REDIS_URL, TOKEN, flush_db


def test_document_is_valid_openapi() -> None:
    spec = document()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    paths = set(spec["paths"])
    assert paths == {
        "/api/reports/abandoned",
        "/api/reports/summary",
        "/api/reports/recovery",
        "/api/reports/experiments",
        "/api/sessions",
        "/api/inbox",
        "/api/inbox/{event_id}/handled",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/release",
        "/api/deliveries",
        "/api/deliveries/{event_id}",
        "/api/deliveries/{event_id}/replay",
        "/api/destinations",
        "/api/sites/{site}/test-event",
        "/api/hooks",
        "/api/hooks/{hook_id}",
        "/api/agents",
        "/api/agents/{agent_id}",
    }
    item = spec["components"]["schemas"]["DeliveryItem"]
    assert set(item["required"]) == DELIVERY_KEYS


class ThreadedServer:
    """The real app under uvicorn in a thread (schemathesis calls it synchronously)."""

    def __init__(self) -> None:
        import uvicorn

        config = Settings(redis_url=REDIS_URL, idle_timeout=1.0, admin_token=TOKEN)
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(config), lifespan="on", log_level="warning")
        )
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


@pytest.fixture(scope="module")
def live() -> Iterator[ThreadedServer]:
    flush_db()
    with ThreadedServer() as running:
        yield running


def test_served_document_is_the_generated_one(live: ThreadedServer) -> None:
    assert httpx.get(f"{live.url}/openapi.json").json() == document()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def _operations(live: ThreadedServer) -> list[Any]:
    # loaded here rather than with schemathesis' pytest plugin, whose lazy fixture
    # support does not run on this pytest
    schema = schemathesis.openapi.from_dict(document())
    schema.config.update(base_url=live.url)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation: Any, mode: GenerationMode, checks: list[Any], seen: set[int]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}

    @FUZZ
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        seen.add(case.call_and_validate(headers=auth, checks=checks).status_code)

    run()


def test_api_keeps_its_contract(live: ThreadedServer) -> None:
    """Generated requests for every operation: valid ones get only documented answers,
    invalid ones (negative mode) a documented 4xx; never a 5xx."""
    operations = _operations(live)
    assert len(operations) == 22
    seen: set[int] = set()
    for operation in operations:
        _fuzz(operation, GenerationMode.POSITIVE, CHECKS, seen)
        _fuzz(
            operation, GenerationMode.NEGATIVE, [not_a_server_error, status_code_conformance], seen
        )
    assert {200, 400, 404} <= seen


def test_api_refuses_a_wrong_token(live: ThreadedServer) -> None:
    for operation in _operations(live):

        @settings(FUZZ, max_examples=2)
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            answer = case.call(headers={"Authorization": "Bearer not-the-token"})
            # past 20 wrong tokens from this client, the throttle answers instead
            assert answer.status_code in (401, 429), (case.method, case.formatted_path)
            assert answer.status_code == 401 or answer.headers["retry-after"]
            assert answer.headers["content-type"][0].startswith("application/json")

        run()
