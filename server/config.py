"""Settings: the environment (``CHATLEAD_`` prefix), read once.

One frozen :class:`Settings` object is built at start and passed down; nothing
else reads the environment (the sites are loaded from it by :mod:`.site_config`).
Every problem is reported as one :class:`ConfigError` line naming the setting.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .durability import Durability
from .errors import ConfigError
from .sites import (
    ForwardPolicy,
    first_problem,
    is_loopback,
)
from .units import Duration, Rate, format_duration, parse_duration, parse_rate

__all__ = [
    "MIN_ADMIN_TOKEN",
    "SECRET_SETTINGS",
    "Settings",
    "describe",
    "load_settings",
    "unknown_env",
]


_DURATIONS = (
    "idle_timeout",
    "retention",
    "retry_schedule",
    "durability_timeout",
    "recovery_ttl",
)
MIN_ADMIN_TOKEN = 24
"""Shortest ``ADMIN_TOKEN`` accepted: guessing it is then hopeless even unthrottled."""
SECRET_SETTINGS = frozenset(
    {
        "webhook_secret",
        "copper_api_key",
        "pulse_api_key",
        "pulse_api_secret",
        "admin_token",
        "smtp_url",
        "slack_webhook_url",
        "hubspot_token",
        "pipedrive_token",
        "salesforce_client_secret",
    }
)
"""Settings whose values are never printed."""


class Settings(BaseSettings):
    """Process-wide settings; see the table in README.md."""

    model_config = SettingsConfigDict(env_prefix="CHATLEAD_", frozen=True, extra="ignore")

    redis_url: str | None = None
    redis_sentinel: Annotated[tuple[str, ...] | None, NoDecode] = None
    redis_master: str = "mymaster"
    durability: Durability = Durability.MEMORY
    durability_timeout: Duration = 2.0
    data_dir: Path = Path(".chatlead")
    config: Path | None = None
    site: str = "default"
    allowed_origins: Annotated[tuple[str, ...] | None, NoDecode] = None
    idle_timeout: Duration = 900.0
    forward_abandoned: ForwardPolicy = ForwardPolicy.WITH_CONTACT
    webhook_url: str | None = None
    webhook_format: str = "external-lead"
    webhook_secret: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_allow_private: bool = False
    webhook_template: Path | None = None
    copper_api_key: str | None = None
    copper_user_email: str | None = None
    pulse_api_key: str | None = None
    pulse_api_secret: str | None = None
    pulse_account_id: str | None = None
    pulse_team_id: int | None = None
    pulse_lead_source_id: int | None = None
    hubspot_token: str | None = None
    pipedrive_token: str | None = None
    salesforce_login_url: str | None = None
    salesforce_client_id: str | None = None
    salesforce_client_secret: str | None = None
    salesforce_lead_source: str | None = None
    notify_email: Annotated[tuple[str, ...], NoDecode] = ()
    slack_webhook_url: str | None = None
    public_url: str | None = None
    smtp_url: str | None = None
    smtp_from: str | None = None
    admin_token: str | None = None
    retention: Duration = 30 * 86400.0
    recovery_ttl: Duration = 7 * 86400.0
    max_frame: int = Field(16384, ge=256, le=1 << 20)
    max_conn_per_ip: int = Field(1000, ge=1)
    max_conn_per_site: int = Field(10_000, ge=1)
    msg_rate: float = Field(10.0, gt=0)
    msg_burst: int = Field(30, ge=1)
    new_sessions_per_ip: Annotated[Rate, NoDecode] = Rate(300, 60.0)
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = (
        0,
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    )
    shards: int = Field(16, ge=1, le=1024)
    log_format: Literal["text", "json"] = "text"
    log_client_ip: Literal["off", "truncated"] = "off"
    metrics_public: bool = False
    header_timeout: Duration = 10.0
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    @field_validator(
        "idle_timeout",
        "retention",
        "header_timeout",
        "durability_timeout",
        "recovery_ttl",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("idle_timeout", "recovery_ttl")
    @classmethod
    def _idle_min(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("header_timeout")
    @classmethod
    def _header_timeout_range(cls, value: float) -> float:
        if not 0 < value <= 60:
            raise ValueError("must be more than 0 and at most 60s")
        return value

    @field_validator("redis_sentinel", mode="before")
    @classmethod
    def _sentinels(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        found = tuple(part.strip() for part in value.split(",") if part.strip())
        for address in found:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port; write e.g. 10.0.0.5:26379,...")
        return found or None

    @field_validator("durability_timeout")
    @classmethod
    def _durability_timeout_range(cls, value: float) -> float:
        if not 0.01 <= value <= 30:
            raise ValueError("must be at least 10ms and at most 30s")
        return value

    @field_validator("allowed_origins", "webhook_secret", "notify_email", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                "use smtp://user:pass@host:587 (STARTTLS) or smtps://user:pass@host:465"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"bad port for {parts.hostname}") from None
        return value

    @field_validator("smtp_from", "public_url")
    @classmethod
    def _no_blank(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("use the address people open, e.g. https://chat.example.com")
        return value.rstrip("/") if value else value

    @field_validator("new_sessions_per_ip", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Rate:
        return parse_rate(value)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError("needs at least one delay")
        return tuple(parse_duration(part) for part in value)

    @field_validator("admin_token")
    @classmethod
    def _admin_token_length(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset: the server makes one (README, "Operator API and reports")
        if len(value) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"must be at least {MIN_ADMIN_TOKEN} characters "
                "(make one with: openssl rand -hex 24), or unset it"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def link_base(self) -> str:
        """The base of links that leave the server (``PUBLIC_URL``, else our own address)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.host)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment plus CLI ``overrides``.

    Raises:
        ConfigError: one line naming the bad setting.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        loc, message = first_problem(exc)
        raise ConfigError(f"CHATLEAD_{str(loc[0]).upper()}: {message}") from None


def _shown(name: str, value: Any) -> str:
    if value is None or value == ():
        return "(unset)"
    if name in SECRET_SETTINGS:
        return "***"
    if name == "redis_url":
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", value)
    if name in _DURATIONS:
        values = value if isinstance(value, tuple) else (value,)
        return ",".join(format_duration(seconds) for seconds in values)
    if isinstance(value, Rate):
        return str(value)
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def describe(settings: Settings) -> list[str]:
    """Every setting as ``CHATLEAD_NAME=value``, as it is in effect; secrets as ``***``."""
    return [
        f"CHATLEAD_{name.upper()}={_shown(name, getattr(settings, name))}"
        for name in type(settings).model_fields
    ]


def unknown_env(environ: Iterable[str]) -> list[tuple[str, str | None]]:
    """``CHATLEAD_*`` names in ``environ`` that are no setting, each with the nearest one."""
    known = [name.upper() for name in Settings.model_fields]
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith("CHATLEAD_") and name.upper()[9:] not in known
    )
    # compared without the common prefix, which would make every name look close
    nearest = (difflib.get_close_matches(name.upper()[9:], known, n=1) for name in unknown)
    return [
        (name, f"CHATLEAD_{match[0]}" if match else None)
        for name, match in zip(unknown, nearest, strict=True)
    ]
