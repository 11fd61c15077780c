"""Lua scripts, loaded once, and their calls batched: one round trip for many calls.

Every script is ``lua/<name>.lua`` prefixed with ``lua/_prelude.lua``. Under a
``DURABILITY`` other than ``memory`` each batch ends with its wait commands
(:mod:`server.durability`) on the connection that carried its writes; a batch they
do not confirm answers every call with :class:`~chatlead.errors.NotDurable`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from .durability import WaitPlan, shortfall
from .errors import NotDurable
from .redis_client import REDIS_ERRORS
from .resp import Pipe, pack, pack_script_call

__all__ = ["Coalescer", "confirmed", "run_each", "script_source"]


def script_source(name: str, *shared: str) -> str:
    """``lua/<name>.lua`` after ``_prelude.lua`` and the ``shared`` pieces it calls."""
    lua = resources.files(__package__ or "chatlead") / "lua"
    return "\n".join((lua / f"{part}.lua").read_text() for part in ("_prelude", *shared, name))


async def _run_all(
    client: aioredis.Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    fast: Pipe | None = None,
    plan: WaitPlan | None = None,
) -> list[Any]:
    """Run ``script`` once per ``(keys, args)`` in one pipeline; each reply or error.

    Each call goes in as a plain EVALSHA, on ``fast`` when given, else on a redis-py
    pipeline: a cluster pipeline refuses ``evalsha()``, so ``script(...,
    client=pipe)`` fails there; it sends each node its share in parallel. A call
    answered NOSCRIPT (restart, failover, SCRIPT FLUSH) never ran; it is run again
    once the script is loaded. ``plan``'s wait commands follow the calls on the same
    connection; replies they do not confirm become :class:`NotDurable`.
    """
    waits = plan.commands if plan is not None else ()
    replies: list[Any]
    if fast is not None:
        packed = [pack_script_call(script.sha, k, a) for k, a in calls]
        replies = await fast.execute([*packed, *(pack(*c) for c in waits)])
    else:
        async with client.pipeline(transaction=False) as pipe:
            for keys_, args in calls:
                pipe.execute_command("EVALSHA", script.sha, len(keys_), *keys_, *args)
            for command in waits:
                pipe.execute_command(*command)
            replies = await pipe.execute(raise_on_error=False)
    replies = confirmed(plan, replies, len(calls))
    return await _load_and_rerun(client, script, calls, replies, plan)


def confirmed(plan: WaitPlan | None, replies: list[Any], count: int) -> list[Any]:
    """The ``count`` call replies of a batch, each a :class:`NotDurable` unless the
    wait replies after them (``plan``) confirm the batch."""
    if plan is None or not plan.commands:
        return replies
    reason = shortfall(plan, replies[count:])
    if reason is None:
        return replies[:count]
    return [NotDurable(reason)] * count


async def _load_and_rerun(
    client: aioredis.Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    replies: list[Any],
    plan: WaitPlan | None = None,
) -> list[Any]:
    """Run again, once the script is loaded, the calls answered NOSCRIPT (with
    ``plan``'s wait commands after them on their own connection)."""
    again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if not again:
        return replies
    try:
        await script.registered_client.script_load(script.script)
        rerun = await _run_all(client, script, [calls[i] for i in again], plan=plan)
    except REDIS_ERRORS as exc:
        rerun = [exc] * len(again)
    for i, reply in zip(again, rerun, strict=True):
        replies[i] = reply
    return replies


async def run_each(
    client: aioredis.Redis | RedisCluster,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    plan: WaitPlan | None = None,
) -> list[Any]:
    """Like :func:`_run_all`, but raise the first error a call got."""
    replies = await _run_all(client, script, calls, plan=plan)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


_Batch = list[tuple[Sequence[str], list[Any], asyncio.Future[Any]]]


class Coalescer:
    """Script calls made during one event-loop tick go to Redis in one pipeline.

    Under load, hundreds of sockets each waiting for their own EVALSHA pay
    redis-py's per-command overhead (pool checkout, timeouts, parsing) once per
    message; sent together they pay it once per tick. Each caller still waits for
    exactly its own reply, so an ack still follows its own stored event.
    """

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        script: AsyncScript,
        fast: Pipe | None = None,
        plan: WaitPlan | None = None,
    ) -> None:
        """Args:
        plan: what confirms a tick's batch (one set of wait commands for all of it).
        """
        self.client = client
        self.script = script
        self.fast = fast
        self.plan: WaitPlan | None = None
        self._waits: list[bytes] = []
        self.confirm_with(plan)
        self._pending: _Batch = []
        self._sending: set[asyncio.Task[None]] = set()

    def confirm_with(self, plan: WaitPlan | None) -> None:
        """Send ``plan``'s wait commands after each batch from now on."""
        self.plan = plan if plan is not None and plan.confirms else None
        self._waits = [pack(*c) for c in self.plan.commands] if self.plan else []

    def call(self, keys_: Sequence[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one call for this tick's batch; await the future for its reply.

        A plain function returning the future: the caller's wake-up then resumes one
        coroutine frame fewer.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys_, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if self.fast is not None:
            # on an open connection: write now and answer from the reply callback,
            # no task and no coroutine per tick
            sha = self.script.sha
            packed = [pack_script_call(sha, k, a) for k, a, _ in batch]
            sent = self.fast.submit(packed + self._waits if self._waits else packed)
            if sent is not None:
                sent.add_done_callback(functools.partial(self._answered, batch))
                return
        self._spawn(self._send(batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _answered(self, batch: _Batch, sent: asyncio.Future[list[Any]]) -> None:
        error = sent.exception()
        if error is not None:
            replies: list[Any] = [error] * len(batch)
        else:
            replies = confirmed(self.plan, sent.result(), len(batch))
        if any(isinstance(reply, NoScriptError) for reply in replies):
            self._spawn(self._rerun(batch, replies))
            return
        self._answer(batch, replies)

    async def _rerun(self, batch: _Batch, replies: list[Any]) -> None:
        calls = [(k, a) for k, a, _ in batch]
        self._answer(
            batch, await _load_and_rerun(self.client, self.script, calls, replies, self.plan)
        )

    async def _send(self, batch: _Batch) -> None:
        try:
            calls = [(k, a) for k, a, _ in batch]
            replies = await _run_all(self.client, self.script, calls, self.fast, self.plan)
        except REDIS_ERRORS as exc:
            replies = [exc] * len(batch)
        self._answer(batch, replies)

    @staticmethod
    def _answer(batch: _Batch, replies: list[Any]) -> None:
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller went away; the script ran or not, both fine
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
