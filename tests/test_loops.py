"""The background loops stop promptly, however early the stop comes."""

from __future__ import annotations

import asyncio
import time

import pytest
from chatlead.app import Background, open_store
from chatlead.loops import forever, rest
from chatlead.runtime import Runtime
from chatlead.sites import Site

from tests.conftest import settings_for


async def test_rest_returns_early_when_stopping() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    assert await rest(stop, 30) is True
    assert time.monotonic() - started < 1


async def test_rest_sleeps_its_time_otherwise() -> None:
    started = time.monotonic()
    assert await rest(asyncio.Event(), 0.05) is False
    assert time.monotonic() - started >= 0.05


async def test_forever_restarts_a_failing_loop_until_stopped() -> None:
    stop = asyncio.Event()
    runs: list[int] = []

    async def failing(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) == 2:
            stop.set()
        raise RuntimeError("boom")

    await asyncio.wait_for(forever(failing, stop), 5)
    assert len(runs) == 2


@pytest.mark.parametrize("after_s", [0, 0.001, 0.003, 0.01, 0.05, 0.3])
async def test_background_stops_within_a_second_at_any_moment(
    redis_url: str, after_s: float
) -> None:
    # a stop just after start used to land inside redis-py calls and hang for 25 s
    settings = settings_for(redis_url)
    store = await open_store(settings)
    try:
        runtime = Runtime(settings, {"default": Site(id="default")}, store)
        background = Background(runtime)
        background.start()
        await asyncio.sleep(after_s)
        started = time.monotonic()
        await background.stop()
        assert time.monotonic() - started < 1
        assert all(task.done() and not task.cancelled() for task in background.tasks)
    finally:
        await store.aclose()
