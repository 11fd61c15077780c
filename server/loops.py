"""How the background loops of a process wait, fail and stop.

A loop is an ``async def run(stop)`` that returns soon after ``stop`` is set. It
waits with :func:`rest`, never a bare ``asyncio.sleep``, so a shutdown never has to
cancel it in the middle of a Redis call: a cancellation that lands while a redis-py
pipeline hands its connection back can leave the task waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Loop", "forever", "rest"]

log = logging.getLogger("chatlead.loops")

Loop = Callable[[asyncio.Event], Awaitable[None]]


async def rest(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile; True when stopping."""
    if not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
    return stop.is_set()


async def forever(loop: Loop, stop: asyncio.Event) -> None:
    """Run ``loop`` until ``stop``; restart it a second after an unexpected error."""
    while not stop.is_set():
        try:
            await loop(stop)
        except Exception:
            log.exception("background_loop_failed loop=%s", getattr(loop, "__qualname__", loop))
            await rest(stop, 1)
