"""The one exception tree of chatlead.

    ChatleadError
    ├── ConfigError           bad setting or site file; start fails naming it
    ├── StoreError            Redis unreachable or refused a command
    │   └── StoreMisconfigured  Redis would evict data, or shard count changed
    ├── FrameError            a client frame the protocol rejects      -> bad_frame
    ├── FieldInvalid          an answer that fails validation          -> invalid_field
    ├── SessionClosed         write to a completed session             -> session_closed
    ├── RateLimited           too many frames                          -> rate_limited
    ├── UnknownSite           hello for a site we do not serve         -> unknown_site
    ├── BadResume             wrong session id / resume token          -> bad_resume
    └── DeliveryError         a CRM request could not be built or sent

Third-party errors (redis, httpx) are translated at the boundary with
``raise ... from exc``. Each error maps to exactly one wire code here.
"""

from __future__ import annotations

__all__ = [
    "BadResume",
    "ChatleadError",
    "ConfigError",
    "DeliveryError",
    "FieldInvalid",
    "FrameError",
    "RateLimited",
    "SessionClosed",
    "StoreError",
    "StoreMisconfigured",
    "UnknownSite",
]


class ChatleadError(Exception):
    """Root of every error chatlead raises on purpose."""

    code = "internal"


class ConfigError(ChatleadError):
    """A setting or site definition is invalid; the message names it."""

    code = "config"


class StoreError(ChatleadError):
    """Redis could not be reached or refused a command."""

    code = "store_unavailable"


class StoreMisconfigured(StoreError):
    """Redis is reachable but set up so that data could be lost."""


class FrameError(ChatleadError):
    """A client frame that is not JSON, has an unknown type or lacks a field."""

    code = "bad_frame"

    def __init__(self, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.frame_id = frame_id


class FieldInvalid(ChatleadError):
    """A field value failed validation; the bot asks again."""

    code = "invalid_field"


class SessionClosed(ChatleadError):
    code = "session_closed"


class RateLimited(ChatleadError):
    code = "rate_limited"


class UnknownSite(ChatleadError):
    code = "unknown_site"


class BadResume(ChatleadError):
    code = "bad_resume"


class DeliveryError(ChatleadError):
    """A delivery could not be prepared (bad template, missing credentials...)."""

    code = "delivery"
