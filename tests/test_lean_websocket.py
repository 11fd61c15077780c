"""The lighter WebSocket protocol's inbox and flag behave as the asyncio classes they
stand in for (the sockets themselves run on it in every server test)."""

from __future__ import annotations

import asyncio

import pytest
from chatlead.lean_websocket import _Flag, _Inbox


async def test_the_inbox_hands_over_in_order_and_waits_when_empty() -> None:
    inbox = _Inbox()
    inbox.put_nowait("connect")
    inbox.put_nowait("receive")
    assert not inbox.empty()
    assert [await inbox.get(), await inbox.get()] == ["connect", "receive"]
    assert inbox.empty()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("disconnect")
    assert await waiting == "disconnect"


async def test_a_cancelled_get_leaves_the_inbox_usable() -> None:
    inbox = _Inbox()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    inbox.put_nowait("later")
    assert await asyncio.wait_for(inbox.get(), 1) == "later"


async def test_the_flag_wakes_every_waiter_once_set() -> None:
    flag = _Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    flag.clear()
    blocked = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not blocked.done()
    flag.set()
    assert await blocked
    assert await flag.wait()  # set: no wait
