"""Settings (environment, ``CHATLEAD_`` prefix) and site definitions.

One frozen :class:`Settings` object is built at start and passed down; nothing
else reads the environment. Sites come either from the environment (one site,
id ``CHATLEAD_SITE``) or from a TOML file (``CHATLEAD_CONFIG``, several sites).
Every problem is reported as one :class:`ConfigError` line naming the setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from server.errors import ConfigError

__all__ = [
    "DEFAULT_FLOW",
    "FieldKind",
    "FlowStep",
    "ForwardPolicy",
    "Settings",
    "Site",
    "Webhook",
    "load_settings",
    "load_sites",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: str | float | int) -> float:
    """Parse ``90s``, ``15m``, ``2h``, ``30d``, ``250ms`` or bare seconds into seconds.

    Raises:
        ValueError: the text is not a duration.
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 2h, 7d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"negative duration: {value!r}")
    return seconds


Duration = Annotated[float, NoDecode]


class FieldKind(StrEnum):
    NAME = "name"
    EMAIL = "email"
    PHONE = "phone"
    COMPANY = "company"
    TEXT = "text"
    CHOICE = "choice"


class ForwardPolicy(StrEnum):
    ALWAYS = "always"
    WITH_CONTACT = "with-contact"
    NEVER = "never"


_KIND_BY_FIELD = {"name": "name", "email": "email", "phone": "phone", "company": "company"}


class FlowStep(BaseModel):
    """One question of a site's scripted conversation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    ask: str = Field(min_length=1, max_length=500)
    kind: FieldKind = FieldKind.TEXT
    required: bool = False
    options: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data and "field" in data:
            data = {**data, "kind": _KIND_BY_FIELD.get(data["field"], "text")}
        return data

    @model_validator(mode="after")
    def _choice_has_options(self) -> FlowStep:
        if (self.kind is FieldKind.CHOICE) != bool(self.options):
            raise ValueError("options are required for kind 'choice' and only for it")
        return self


DEFAULT_FLOW: tuple[FlowStep, ...] = (
    FlowStep(field="name", ask="What's your name?", required=True),
    FlowStep(field="email", ask="What's the best email to reach you?", required=True),
    FlowStep(field="phone", ask="And a phone number? (optional)"),
    FlowStep(field="message", ask="What can we help you with?"),
)

WebhookFormat = Literal["external-lead", "copper", "pulse", "template"]


class Webhook(BaseModel):
    """Where and how a site's leads are delivered. ``url=None`` means the inbox."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None
    format: WebhookFormat = "external-lead"
    secrets: tuple[str, ...] = ()
    allow_private: bool = False
    copper_api_key: str | None = None
    copper_user_email: str | None = None
    pulse_api_key: str | None = None
    pulse_api_secret: str | None = None
    pulse_account_id: str | None = None
    pulse_team_id: int | None = None
    pulse_lead_source_id: int | None = None
    template: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("secrets")
    @classmethod
    def _secrets_are_whsec(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > 2:
            raise ValueError("at most two secrets (new and old, during rotation)")
        for secret in value:
            if not secret.startswith("whsec_"):
                raise ValueError("a secret must look like whsec_<base64>")
        return value

    @model_validator(mode="after")
    def _format_needs(self) -> Webhook:
        if self.format == "pulse" and not (self.pulse_api_key and self.pulse_api_secret):
            raise ValueError("format 'pulse' needs PULSE_API_KEY and PULSE_API_SECRET")
        if self.format == "pulse" and not self.url:
            raise ValueError("format 'pulse' needs the Pulse API base URL as the webhook url")
        if self.format == "copper" and not (self.copper_api_key and self.copper_user_email):
            raise ValueError("format 'copper' needs COPPER_API_KEY and COPPER_USER_EMAIL")
        if self.format == "template" and not self.template:
            raise ValueError("format 'template' needs a template")
        if self.format in ("external-lead", "template") and self.url is None and self.template:
            raise ValueError("a template needs a url")
        return self


class Site(BaseModel):
    """Everything chatlead knows about one website it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    allowed_origins: tuple[str, ...] = ("*",)
    company: str | None = None
    idle_timeout: float = 900.0
    forward_abandoned: ForwardPolicy = ForwardPolicy.WITH_CONTACT
    phone_region: str = "US"
    greeting: str = "Hi! Leave us a few details and we'll get back to you."
    flow: tuple[FlowStep, ...] = DEFAULT_FLOW
    webhook: Webhook = Field(default_factory=Webhook)
    source: str = "chat-widget"
    job_type_id: str | None = None
    availability_class_id: str | None = None
    place_id: str | None = None
    max_connections: Annotated[int | None, Field(ge=1)] = None
    """Open sockets for this site across all processes; unset: ``MAX_CONN_PER_SITE``."""

    @field_validator("idle_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError("idle_timeout must be at least 1s")
        return seconds

    @field_validator("flow")
    @classmethod
    def _unique_fields(cls, value: tuple[FlowStep, ...]) -> tuple[FlowStep, ...]:
        names = [step.field for step in value]
        if not names:
            raise ValueError("a flow needs at least one step")
        if len(set(names)) != len(names):
            raise ValueError("each field may appear once in a flow")
        return value

    def origin_allowed(self, origin: str | None) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Process-wide settings; see the table in README.md."""

    model_config = SettingsConfigDict(env_prefix="CHATLEAD_", frozen=True, extra="ignore")

    redis_url: str | None = None
    data_dir: Path = Path(".chatlead")
    config: Path | None = None
    site: str = "default"
    allowed_origins: Annotated[tuple[str, ...] | None, NoDecode] = None
    idle_timeout: Duration = 900.0
    forward_abandoned: ForwardPolicy = ForwardPolicy.WITH_CONTACT
    webhook_url: str | None = None
    webhook_format: WebhookFormat = "external-lead"
    webhook_secret: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_allow_private: bool = False
    copper_api_key: str | None = None
    copper_user_email: str | None = None
    pulse_api_key: str | None = None
    pulse_api_secret: str | None = None
    pulse_account_id: str | None = None
    pulse_team_id: int | None = None
    pulse_lead_source_id: int | None = None
    admin_token: str | None = None
    retention: Duration = 30 * 86400.0
    max_frame: int = Field(16384, ge=256, le=1 << 20)
    max_conn_per_ip: int = Field(1000, ge=1)
    max_conn_per_site: int = Field(10_000, ge=1)
    msg_rate: float = Field(10.0, gt=0)
    msg_burst: int = Field(30, ge=1)
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
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    @field_validator("idle_timeout", "retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("idle_timeout")
    @classmethod
    def _idle_min(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("allowed_origins", "webhook_secret", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError("needs at least one delay")
        return tuple(parse_duration(part) for part in value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def loopback_only(self) -> bool:
        return _is_loopback(self.host)

    def env_site(self) -> Site:
        """The single site defined by environment variables."""
        origins = self.allowed_origins
        if origins is None:
            if not self.loopback_only:
                raise ConfigError(
                    "CHATLEAD_ALLOWED_ORIGINS is required when listening beyond loopback"
                )
            origins = ("*",)
        webhook = Webhook(
            url=self.webhook_url,
            format=self.webhook_format,
            secrets=self.webhook_secret,
            allow_private=self.webhook_allow_private,
            copper_api_key=self.copper_api_key,
            copper_user_email=self.copper_user_email,
            pulse_api_key=self.pulse_api_key,
            pulse_api_secret=self.pulse_api_secret,
            pulse_account_id=self.pulse_account_id,
            pulse_team_id=self.pulse_team_id,
            pulse_lead_source_id=self.pulse_lead_source_id,
        )
        return Site(
            id=self.site,
            allowed_origins=origins,
            idle_timeout=self.idle_timeout,
            forward_abandoned=self.forward_abandoned,
            webhook=webhook,
        )


def _first_error(exc: ValidationError, prefix: str, *, upper: bool = False) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{prefix}{where.upper() if upper else where}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment plus CLI ``overrides``.

    Raises:
        ConfigError: one line naming the bad setting.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, "CHATLEAD_", upper=True)) from None


def _resolve_env_refs(value: Any, where: str) -> Any:
    """Replace ``"env:VAR"`` strings (secrets) with the variable's value."""
    if isinstance(value, dict):
        return {k: _resolve_env_refs(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env_refs(v, where) for v in value]
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]
    return value


_WEBHOOK_RENAMES = {"secret": "secrets"}


def _site_from_toml(site_id: str, raw: dict[str, Any], settings: Settings, path: Path) -> Site:
    raw = _resolve_env_refs(dict(raw), f"{path}: sites.{site_id}")
    webhook = dict(raw.pop("webhook", {}))
    for old, new in _WEBHOOK_RENAMES.items():
        if old in webhook:
            secret = webhook.pop(old)
            webhook[new] = [secret] if isinstance(secret, str) else secret
    webhook.setdefault("allow_private", settings.webhook_allow_private)
    where = f"{path}: sites.{site_id}."
    try:
        hook = Webhook(**webhook)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, where + "webhook.")) from None
    _check_templates(hook, where + "webhook.")
    try:
        return Site(id=site_id, webhook=hook, **raw)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, where)) from None


def _check_templates(hook: Webhook, where: str) -> None:
    """A template that cannot render valid JSON fails at start, not on every lead."""
    from server.formats.template import validate_template

    checks = [("template", hook.template, True)] if hook.template else []
    checks += [(f"headers.{name}", value, False) for name, value in hook.headers.items()]
    for key, text, json_body in checks:
        try:
            validate_template(text, json_body=json_body)
        except ConfigError as exc:
            raise ConfigError(f"{where}{key}: {exc}") from None


def load_sites(settings: Settings) -> dict[str, Site]:
    """All sites this process serves, by id.

    Raises:
        ConfigError: the file or a site in it is invalid (file, site and key named).
    """
    if settings.config is None:
        site = settings.env_site()
        return {site.id: site}
    path = settings.config
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"CHATLEAD_CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(document) - {"sites"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r} (expected [sites.<id>])")
    sites_raw = document.get("sites") or {}
    if not sites_raw:
        raise ConfigError(f"{path}: no [sites.<id>] defined")
    return {
        site_id: _site_from_toml(site_id, raw, settings, path) for site_id, raw in sites_raw.items()
    }
