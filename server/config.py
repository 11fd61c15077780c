"""Settings and sites: the environment (``CHATLEAD_`` prefix) and site file, read once.

One frozen :class:`Settings` object is built at start and passed down; nothing
else reads the environment. The sites come either from the environment (one site, id
``CHATLEAD_SITE``) or from a TOML file (``CHATLEAD_CONFIG``, several sites).
Every problem is reported as one :class:`ConfigError` line naming the setting.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import formats
from .conditions import DERIVED_FIELDS, fields_named
from .durability import Durability
from .errors import ConfigError
from .hooks import HOOK_PREFIX
from .sites import (
    LEAD_EVENTS,
    WEBHOOK,
    Destination,
    FieldProblem,
    ForwardPolicy,
    Site,
    first_problem,
    is_loopback,
)
from .units import Duration, Rate, format_duration, parse_duration, parse_rate

__all__ = [
    "MIN_ADMIN_TOKEN",
    "SECRET_SETTINGS",
    "Settings",
    "describe",
    "check_outgoing",
    "load_settings",
    "load_sites",
    "unknown_env",
]


_DURATIONS = ("idle_timeout", "retention", "retry_schedule", "durability_timeout")
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
        "idle_timeout", "retention", "header_timeout", "durability_timeout", mode="before"
    )
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("idle_timeout")
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


# Settings behind the env-defined webhook's keys, where the names differ.
_ENV_FIELDS = {
    "id": "site",
    "url": "webhook_url",
    "format": "webhook_format",
    "secrets": "webhook_secret",
    "allow_private": "webhook_allow_private",
    "template": "webhook_template",
}
_TOML_KEYS = {"secrets": "secret"}


def _env_name(field: str) -> str:
    return "CHATLEAD_" + _ENV_FIELDS.get(field, field).upper()


def _read_template(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"CHATLEAD_WEBHOOK_TEMPLATE: cannot read {path}: {exc.strerror}"
        ) from None


def _problem(exc: ValidationError | FieldProblem) -> tuple[tuple[str | int, ...], str]:
    if isinstance(exc, FieldProblem):
        return (exc.field,), str(exc)
    return first_problem(exc)


def _env_destinations(settings: Settings) -> list[Destination]:
    """``CHATLEAD_WEBHOOK_*`` (with the format's own settings) as a destination, when
    any is set; errors name the variable."""
    made = []
    if settings.webhook_format in ALERTS:
        raise ConfigError(
            "CHATLEAD_WEBHOOK_FORMAT: alerts have their own settings: "
            "CHATLEAD_NOTIFY_EMAIL and CHATLEAD_SLACK_WEBHOOK_URL"
        )
    hook = (settings.webhook_url, settings.webhook_secret, settings.webhook_template)
    if any(hook) or settings.webhook_format != "external-lead":
        raw: dict[str, Any] = {
            field: getattr(settings, setting)
            for field, setting in _ENV_FIELDS.items()
            if field != "id" and getattr(settings, setting) is not None
        }
        raw["template"] = _read_template(settings.webhook_template)
        if settings.webhook_format in formats.MODULES:
            own = formats.get(settings.webhook_format).options.model_fields
            raw |= {k: getattr(settings, k) for k in own if getattr(settings, k, None) is not None}
        made.append(_destination(raw, _env_name))
    private = settings.webhook_allow_private
    if settings.notify_email:
        raw = {"name": "email", "format": "email", "to": list(settings.notify_email)}
        raw |= {"events": ALERT_EVENTS, "allow_private": private}
        made.append(_destination(raw, lambda key: "CHATLEAD_NOTIFY_EMAIL"))
    if settings.slack_webhook_url:
        raw = {"name": "slack", "format": "slack", "url": settings.slack_webhook_url}
        raw |= {"events": ALERT_EVENTS, "allow_private": private}
        made.append(_destination(raw, lambda key: "CHATLEAD_SLACK_WEBHOOK_URL"))
    return made


ALERT_EVENTS = [*LEAD_EVENTS, "visitor.waiting"]
"""What the environment's email and Slack alerts are sent for."""
ALERTS = ("email", "slack")
"""Formats whose messages link into the admin (so a worker needs ``PUBLIC_URL``)."""


def check_outgoing(settings: Settings, sites: Mapping[str, Site], *, worker: bool) -> None:
    """Email destinations need the SMTP settings; a worker sending alerts needs
    ``PUBLIC_URL`` (it listens nowhere to build links from).

    Raises:
        ConfigError: naming the missing setting and who needs it.
    """
    for site in sites.values():
        for destination in site.destinations:
            who = f"destination {destination.name!r} of site {site.id!r}"
            if destination.format == "email":
                for setting in ("smtp_url", "smtp_from"):
                    if not getattr(settings, setting):
                        raise ConfigError(
                            f"CHATLEAD_{setting.upper()}: required by the email {who}"
                        )
            if worker and destination.format in ALERTS and not settings.public_url:
                raise ConfigError(
                    f"CHATLEAD_PUBLIC_URL: required by the worker for the links in the "
                    f"{destination.format} {who} (e.g. https://chat.example.com)"
                )


def _destination(raw: dict[str, Any], name: Callable[[str], str]) -> Destination:
    """One destination; ``name(key)`` is how an error names a key."""
    try:
        made = formats.destination(raw)
    except (ValidationError, FieldProblem) as exc:
        loc, message = _problem(exc)
        raise ConfigError(f"{name(str(loc[0]))}: {message}") from None
    _check_templates(made, name)
    return made


def _env_site(settings: Settings) -> Site:
    """The single site defined by environment variables; errors name the variable."""
    origins = settings.allowed_origins
    if origins is None:
        if not settings.loopback_only:
            raise ConfigError("CHATLEAD_ALLOWED_ORIGINS is required when listening beyond loopback")
        origins = ("*",)
    destinations = _env_destinations(settings)
    try:
        return Site(
            id=settings.site,
            allowed_origins=origins,
            idle_timeout=settings.idle_timeout,
            forward_abandoned=settings.forward_abandoned,
            destinations=tuple(destinations) or (Destination(),),
        )
    except ValidationError as exc:
        loc, message = first_problem(exc)
        raise ConfigError(f"{_env_name(str(loc[0]))}: {message}") from None


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


def _toml_destination(raw: Any, settings: Settings, name: Callable[[str], str]) -> Destination:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name('')}: must be a table")
    raw = dict(raw)
    if "secret" in raw:
        secret = raw.pop("secret")
        raw["secrets"] = [secret] if isinstance(secret, str) else secret
    raw.setdefault("allow_private", settings.webhook_allow_private)
    return _destination(raw, name)


def _site_from_toml(site_id: str, raw: dict[str, Any], settings: Settings, path: Path) -> Site:
    raw = _resolve_env_refs(dict(raw), f"{path}: sites.{site_id}")
    if isinstance(raw.get("idle_timeout"), int | float):
        raw["idle_timeout"] = str(raw["idle_timeout"])  # refused: a number has no unit
    where = f"{path}: sites.{site_id}."

    def key(*loc: str | int) -> str:
        return where + ".".join(_TOML_KEYS.get(str(part), str(part)) for part in loc if part != "")

    destinations = []
    if "webhook" in raw:
        hook = raw.pop("webhook")
        destinations.append(_toml_destination(hook, settings, lambda k: key("webhook", k)))
    listed = raw.pop("destinations", [])
    if not isinstance(listed, list):
        raise ConfigError(f"{key('destinations')}: write each as [[sites.{site_id}.destinations]]")
    for i, entry in enumerate(listed):
        label = entry.get("name", i) if isinstance(entry, dict) else i

        def named(k: str, label: str | int = label) -> str:
            return key("destinations", label, k)

        destinations.append(_toml_destination(entry, settings, named))
        given = entry.get("name", WEBHOOK) if isinstance(entry, dict) else WEBHOOK
        if given == WEBHOOK:
            raise ConfigError(f"{named('name')}: required, unique in the site, not {WEBHOOK!r}")
        if str(given).startswith(HOOK_PREFIX):
            raise ConfigError(f"{named('name')}: {HOOK_PREFIX!r} names are kept for REST hooks")
    try:
        site = Site(id=site_id, destinations=tuple(destinations) or (Destination(),), **raw)
    except ValidationError as exc:
        loc, message = first_problem(exc)
        raise ConfigError(f"{key(*loc)}: {message}") from None
    _check_when(
        site,
        lambda name: (
            key("webhook", "when") if name == WEBHOOK else key("destinations", name, "when")
        ),
    )
    return site


def _check_when(site: Site, name: Callable[[str], str]) -> None:
    """A ``when`` may only look at fields the site's flow asks or the server adds."""
    known = {step.field for step in site.flow} | DERIVED_FIELDS
    for destination in site.destinations:
        if destination.when is None:
            continue
        unknown = sorted(fields_named(destination.when) - known)
        if unknown:
            raise ConfigError(
                f"{name(destination.name)}: field {unknown[0]!r} is not asked by this "
                f"site's flow (fields: {', '.join(sorted(known))})"
            )


def _check_templates(destination: Destination, name: Callable[[str], str]) -> None:
    """A template that cannot render valid JSON fails at start, not on every lead."""
    checks = [("template", destination.template, True)] if destination.template else []
    checks += [(f"headers.{header}", value, False) for header, value in destination.headers.items()]
    if not checks:
        return  # and the CLI starts faster: no Jinja2 to import
    from .formats.template import validate_template

    for key, text, json_body in checks:
        try:
            validate_template(text, json_body=json_body)
        except ConfigError as exc:
            raise ConfigError(f"{name(key)}: {exc}") from None


def load_sites(settings: Settings) -> dict[str, Site]:
    """All sites this process serves, by id.

    Raises:
        ConfigError: the file or a site in it is invalid (file, site and key named).
    """
    if settings.config is None:
        site = _env_site(settings)
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
