"""Fixtures of the admin tests: one real server per test module, a sync Redis client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis

from tests.admin.serving import REDIS_URL, Served, flush_db, serve


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server() -> AsyncIterator[Served]:
    """One server per test module (starting one costs about a second)."""
    flush_db()
    async with serve() as running:
        yield running


@pytest.fixture
def served(shared_server: Served) -> Served:
    """The module's server over an empty database."""
    flush_db()
    return shared_server


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()
