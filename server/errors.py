"""The one exception tree of chatlead.

    ChatleadError
    ├── ConfigError           bad setting or site file; start fails naming it
    ├── StoreError            Redis unreachable or refused a command
    │   ├── StoreMisconfigured  Redis would evict data, or shard count changed
    │   └── NotDurable          a write DURABILITY_TIMEOUT did not see confirmed
    ├── FrameError            a client frame the protocol rejects
    ├── FieldInvalid          an answer that fails validation
    └── DeliveryError         a CRM request could not be built or sent

Third-party errors (redis, httpx) are translated at the boundary with
``raise ... from exc``. What a widget is told for each is decided in one place,
:data:`server.conversation.WIRE_CODES`.
"""

from __future__ import annotations

__all__ = [
    "ChatleadError",
    "ConfigError",
    "DeliveryError",
    "FieldInvalid",
    "FieldProblem",
    "FrameError",
    "NotDurable",
    "StoreError",
    "StoreMisconfigured",
]


class ChatleadError(Exception):
    """Root of every error chatlead raises on purpose."""


class ConfigError(ChatleadError):
    """A setting or site definition is invalid; the message names it."""


class StoreError(ChatleadError):
    """Redis could not be reached or refused a command."""


class StoreMisconfigured(StoreError):
    """Redis is reachable but set up so that data could be lost."""


class NotDurable(StoreError):
    """Redis ran the write but ``WAIT``/``WAITAOF`` did not confirm it in time (§14).

    Not an ack: the write may be lost in a failover or power cut; the caller resends
    (the scripts dedupe by frame id).
    """


class FrameError(ChatleadError):
    """A client frame that is not JSON, has an unknown type or lacks a field."""

    def __init__(self, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.frame_id = frame_id


class FieldInvalid(ChatleadError):
    """A field value failed validation; the bot asks again."""


class DeliveryError(ChatleadError):
    """A delivery could not be prepared (bad template, missing credentials...)."""


class FieldProblem(ValueError):
    """A rule across fields broken by one of them: the loaders name that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
