"""What an ack waits for (CONTRACT §14), decided without I/O.

``memory``: Redis has the write (no extra command). ``local``: ``WAITAOF 1 0``, the
primary has fsynced its append-only file. ``replica``: ``WAIT 1``, at least one
replica has the write, plus ``WAITAOF 1 0`` when the primary keeps an append-only
file and has ``WAITAOF`` (a master promoted in a failover that keeps none answers
``WAITAOF`` with an error: then ``WAIT`` alone decides). ``WAITAOF 1 1`` is not
used: it would also need every replica's own append-only file (a replica without one
never reports an fsynced offset, and every ack would time out).

The wait commands are sent after a batch of writes on the *same* connection: both
count the replication offset of that connection's last write, and since
replication is one ordered stream, they then cover every write the primary made
before it, on any connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .units import format_duration

__all__ = ["Durability", "WaitPlan", "plan_for", "refusal", "shortfall", "supports_waitaof"]


class Durability(StrEnum):
    MEMORY = "memory"
    LOCAL = "local"
    REPLICA = "replica"


@dataclass(frozen=True)
class WaitPlan:
    """The commands that confirm a batch, and what their answers must reach."""

    mode: Durability
    timeout_s: float
    commands: tuple[tuple[str | int, ...], ...] = ()

    @property
    def confirms(self) -> bool:
        return bool(self.commands)


def supports_waitaof(server: Mapping[str, Any]) -> bool:
    """``WAITAOF`` exists: Valkey, or Redis 7.2 and later (``INFO server``)."""
    if "valkey_version" in server:
        return True
    return _version(str(server.get("redis_version", "0"))) >= (7, 2)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def server_name(server: Mapping[str, Any]) -> str:
    """``Valkey 9.1.2`` or ``Redis 7.0.15`` from ``INFO server``."""
    if "valkey_version" in server:
        return f"Valkey {server['valkey_version']}"
    return f"Redis {server.get('redis_version', '?')}"


def _aof_on(persistence: Mapping[str, Any]) -> bool:
    return str(persistence.get("aof_enabled", "0")) == "1"


def refusal(
    mode: Durability,
    server: Mapping[str, Any],
    persistence: Mapping[str, Any],
    *,
    cluster: bool = False,
) -> str | None:
    """Why this server cannot honour ``mode`` (one line naming ``DURABILITY``), or None.

    ``replica`` with no replica attached is not refused: the acks time out and the
    readiness check says why (a replica may attach later).
    """
    if mode is Durability.MEMORY:
        return None
    name = server_name(server)
    if cluster:
        return f"CHATLEAD_DURABILITY={mode}: not supported on Redis Cluster ({name}); use memory"
    if mode is Durability.LOCAL:
        if not supports_waitaof(server):
            return (
                f"CHATLEAD_DURABILITY=local needs WAITAOF (Redis 7.2 or later, or Valkey); "
                f"the server is {name}"
            )
        if not _aof_on(persistence):
            return (
                f"CHATLEAD_DURABILITY=local needs appendonly yes on the server ({name} "
                "has no append-only file)"
            )
    return None


def plan_for(
    mode: Durability,
    timeout_s: float,
    server: Mapping[str, Any],
    persistence: Mapping[str, Any],
) -> WaitPlan:
    """The wait commands for ``mode`` on this server (none for ``memory``)."""
    ms = max(1, int(timeout_s * 1000))
    if mode is Durability.LOCAL:
        return WaitPlan(mode, timeout_s, (("WAITAOF", 1, 0, ms),))
    if mode is Durability.REPLICA:
        commands: tuple[tuple[str | int, ...], ...] = (("WAIT", 1, ms),)
        if supports_waitaof(server) and _aof_on(persistence):
            commands += (("WAITAOF", 1, 0, ms),)
        return WaitPlan(mode, timeout_s, commands)
    return WaitPlan(mode, timeout_s)


def _no_aof(command: tuple[str | int, ...], reply: Any) -> bool:
    """``WAITAOF`` refused because the server now keeps no append-only file."""
    return command[0] == "WAITAOF" and isinstance(reply, Exception) and "appendonly" in str(reply)


def shortfall(plan: WaitPlan, replies: Sequence[Any]) -> str | None:
    """Why the answers to ``plan.commands`` do not confirm the batch, or None.

    ``replies`` holds one answer per command: the number of replicas for ``WAIT``,
    ``[local, replicas]`` for ``WAITAOF``, or the error a command got.
    """
    within = format_duration(plan.timeout_s)
    for command, reply in zip(plan.commands, replies, strict=True):
        if plan.mode is Durability.REPLICA and _no_aof(command, reply):
            continue  # promoted in a failover onto a server without one: WAIT decides
        if isinstance(reply, Exception):
            return f"durability {plan.mode}: {command[0]} failed: {reply}"
        if command[0] == "WAIT" and int(reply) < int(command[1]):
            return f"durability {plan.mode}: no replica acknowledged within {within}"
        if command[0] == "WAITAOF" and int(reply[0]) < int(command[1]):
            return f"durability {plan.mode}: the append-only file was not fsynced within {within}"
    return None
