"""Settings (environment, ``CHATLEAD_`` prefix) and site definitions.

One frozen :class:`Settings` object is built at start and passed down; nothing
else reads the environment. Sites come either from the environment (one site,
id ``CHATLEAD_SITE``) or from a TOML file (``CHATLEAD_CONFIG``, several sites).
Every problem is reported as one :class:`ConfigError` line naming the setting.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigError

__all__ = [
    "DEFAULT_FLOW",
    "FieldKind",
    "FlowStep",
    "ForwardPolicy",
    "Settings",
    "Site",
    "Webhook",
    "check_targets",
    "describe",
    "format_duration",
    "load_settings",
    "load_sites",
    "parse_duration",
    "parse_rate",
    "unknown_env",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_duration(value: str | float | int) -> float:
    """Parse ``90s``, ``15m``, ``2h``, ``30d``, ``250ms`` (or ``0``) into seconds.

    Text needs a unit: ``15`` could mean seconds or minutes, so it is refused.
    Numbers given from code are seconds.

    Raises:
        ValueError: the text is not a duration, or has no unit.
    """
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 15m, 2h or 7d")
        number, unit = match.groups()
        if unit is None and float(number) != 0:
            raise ValueError(f"{number} has no unit; write {number}s, {number}m or {number}h")
        seconds = float(number) * _UNIT_SECONDS[unit or "s"]
    if seconds < 0:
        raise ValueError(f"negative duration: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest text :func:`parse_duration` reads back as ``seconds`` (``900`` -> ``15m``)."""
    if seconds == 0:
        return "0"
    for unit, size in _UNIT_SECONDS.items():
        count = seconds / size
        if count >= 1 and round(count, 6).is_integer():
            return f"{round(count)}{unit}"
    return f"{seconds * 1000:g}ms"


class Rate(NamedTuple):
    """``events`` per ``per_s`` seconds, in bursts of up to ``events``."""

    events: int
    per_s: float

    def __str__(self) -> str:
        """As :func:`parse_rate` reads it back (``300/min``, ``5/s``, ``50/10m``)."""
        period = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.per_s)
        return f"{self.events}/{period or format_duration(self.per_s)}"


_RATE_UNITS = {"s": "1s", "sec": "1s", "min": "1m", "h": "1h", "hour": "1h", "d": "1d"}


def parse_rate(value: str | Rate) -> Rate:
    """Parse ``300/min``, ``5/s``, ``1000/h`` or ``50/10m`` into a :class:`Rate`.

    Raises:
        ValueError: not ``<count>/<unit or duration>`` with a positive count and period.
    """
    if isinstance(value, Rate):
        return value
    count, slash, period = str(value).partition("/")
    if not slash or not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"{value!r} is not a rate; write e.g. 300/min, 5/s or 1000/h")
    per_s = parse_duration(_RATE_UNITS.get(period.strip(), period))
    if per_s <= 0:
        raise ValueError(f"{value!r} needs a period longer than zero")
    return Rate(int(count), per_s)


class _FieldProblem(ValueError):
    """A rule across fields broken by one of them: the loaders name that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        problem = None if value is None else _url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _format_needs(self) -> Webhook:
        needs = {
            "pulse": ("pulse_api_key", "pulse_api_secret", "url"),
            "copper": ("copper_api_key", "copper_user_email"),
            "template": ("template", "url"),
        }
        for field in needs.get(self.format, ()):
            if not getattr(self, field):
                what = "the Pulse API base URL" if self.format == "pulse" and field == "url" else ""
                raise _FieldProblem(
                    field, f"{what or 'required'} for webhook format {self.format!r}"
                )
        if self.format == "external-lead" and self.template and self.url is None:
            raise _FieldProblem("url", "required with a template")
        return self


def _url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL; the URL is never quoted (it may hold a token)."""
    if "://" not in url:
        return "has no scheme; include https:// (e.g. https://hooks.example.com/leads)"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme}:// is not supported; use https://"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"bad port for {parts.hostname}"
    return None if parts.hostname else "has no host"


class Site(BaseModel):
    """Everything chatlead knows about one website it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
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

    @field_validator("id")
    @classmethod
    def _site_id(cls, value: str) -> str:
        if not _SITE_ID.match(value):
            raise ValueError(f"{value!r} is not a site id; use letters, digits, - and _ (up to 64)")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_origin(origin) for origin in value)

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


_SITE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ORIGIN = re.compile(r"^https?://[^/?#\s]+$")


def _origin(origin: str) -> str:
    """``origin`` as browsers send it (no trailing slash), or ValueError saying what is wrong."""
    if origin == "*":
        return origin
    if "://" not in origin:
        raise ValueError(f"{origin!r} has no scheme; include https:// (https://{origin})")
    clean = origin.rstrip("/")
    if not _ORIGIN.match(clean):
        raise ValueError(f"{origin!r} is not an origin; write scheme://host[:port], no path")
    return clean


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DURATIONS = ("idle_timeout", "retention", "retry_schedule")
MIN_ADMIN_TOKEN = 24
"""Shortest ``ADMIN_TOKEN`` accepted: guessing it is then hopeless even unthrottled."""
SECRET_SETTINGS = frozenset(
    {"webhook_secret", "copper_api_key", "pulse_api_key", "pulse_api_secret", "admin_token"}
)
"""Settings whose values are never printed."""


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
    webhook_template: Path | None = None
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

    @field_validator("idle_timeout", "retention", "header_timeout", mode="before")
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

    @field_validator("allowed_origins", "webhook_secret", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

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
        return _is_loopback(self.host)


# Settings behind the env-defined site's fields, where the names differ.
_ENV_FIELDS = {
    "id": "site",
    "url": "webhook_url",
    "format": "webhook_format",
    "secrets": "webhook_secret",
    "allow_private": "webhook_allow_private",
    "template": "webhook_template",
}
_ENV_WEBHOOK = (
    "url",
    "format",
    "secrets",
    "allow_private",
    "copper_api_key",
    "copper_user_email",
    "pulse_api_key",
    "pulse_api_secret",
    "pulse_account_id",
    "pulse_team_id",
    "pulse_lead_source_id",
)
_TOML_KEYS = {"secrets": "secret"}


def _env_name(field: str) -> str:
    return "CHATLEAD_" + _ENV_FIELDS.get(field, field).upper()


def _problem(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """Where the first error is (field path) and what it says, never the value given."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, _FieldProblem):
        loc = (*loc, cause.field)
    return loc, str(err["msg"]).removeprefix("Value error, ")


def _read_template(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"CHATLEAD_WEBHOOK_TEMPLATE: cannot read {path}: {exc.strerror}"
        ) from None


def _env_site(settings: Settings) -> Site:
    """The single site defined by environment variables; errors name the variable."""
    origins = settings.allowed_origins
    if origins is None:
        if not settings.loopback_only:
            raise ConfigError("CHATLEAD_ALLOWED_ORIGINS is required when listening beyond loopback")
        origins = ("*",)
    webhook = {field: getattr(settings, _ENV_FIELDS.get(field, field)) for field in _ENV_WEBHOOK}
    try:
        hook = Webhook(template=_read_template(settings.webhook_template), **webhook)
        site = Site(
            id=settings.site,
            allowed_origins=origins,
            idle_timeout=settings.idle_timeout,
            forward_abandoned=settings.forward_abandoned,
            webhook=hook,
        )
    except ValidationError as exc:
        loc, message = _problem(exc)
        raise ConfigError(f"{_env_name(str(loc[0]))}: {message}") from None
    _check_templates(hook, _env_name)
    return site


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment plus CLI ``overrides``.

    Raises:
        ConfigError: one line naming the bad setting.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        loc, message = _problem(exc)
        raise ConfigError(f"CHATLEAD_{str(loc[0]).upper()}: {message}") from None


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
    if isinstance(raw.get("idle_timeout"), int | float):
        raw["idle_timeout"] = str(raw["idle_timeout"])  # refused: a number has no unit
    where = f"{path}: sites.{site_id}."

    def key(*loc: str | int) -> str:
        return where + ".".join(_TOML_KEYS.get(str(part), str(part)) for part in loc)

    try:
        hook = Webhook(**webhook)
    except ValidationError as exc:
        loc, message = _problem(exc)
        raise ConfigError(f"{key('webhook', *loc)}: {message}") from None
    _check_templates(hook, lambda name: key("webhook", name))
    try:
        return Site(id=site_id, webhook=hook, **raw)
    except ValidationError as exc:
        loc, message = _problem(exc)
        raise ConfigError(f"{key(*loc)}: {message}") from None


def _check_templates(hook: Webhook, name: Callable[[str], str]) -> None:
    """A template that cannot render valid JSON fails at start, not on every lead."""
    checks = [("template", hook.template, True)] if hook.template else []
    checks += [(f"headers.{header}", value, False) for header, value in hook.headers.items()]
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


def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def check_targets(
    settings: Settings,
    sites: Mapping[str, Site],
    resolve: Callable[[str, int], list[str]] = _resolve,
) -> list[str]:
    """Refuse webhook targets every delivery would refuse (§5): http, or a private address.

    A site that allows private targets is not checked. The host is resolved now;
    deliveries check it again at send time (DNS may change).

    Returns:
        Warnings: hosts that do not resolve now (deliveries retry until they do).

    Raises:
        ConfigError: naming the url setting and the setting that allows it.
    """
    warnings: list[str] = []
    checked = [
        site for site in sites.values() if site.webhook.url and not site.webhook.allow_private
    ]
    if not checked:
        return warnings  # and the CLI starts faster: no HTTP client to import
    from .formats.guard import is_public_address

    for site in checked:
        url = site.webhook.url or ""
        if settings.config is None:
            name, allow = "CHATLEAD_WEBHOOK_URL", "set CHATLEAD_WEBHOOK_ALLOW_PRIVATE=true"
        else:
            name = f"{settings.config}: sites.{site.id}.webhook.url"
            allow = f"set allow_private = true in [sites.{site.id}.webhook]"
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme.lower() != "https":
            raise ConfigError(
                f"{name}: http:// would send leads to {host} unencrypted; use https://, "
                f"or {allow} for a development receiver"
            )
        try:
            addresses = resolve(host, parts.port or 443)
        except (OSError, UnicodeError):
            warnings.append(f"{name}: {host} does not resolve now; deliveries retry until it does")
            continue
        blocked = [ip for ip in addresses if not is_public_address(ip)]
        if blocked:
            raise ConfigError(
                f"{name}: {host} is a loopback or private address ({blocked[0]}); "
                f"{allow} to deliver there (development, tests)"
            )
    return warnings


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
