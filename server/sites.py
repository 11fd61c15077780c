"""Sites: what each business's chat asks and where its leads go, and how sites load.

The models (:class:`Site`, :class:`Webhook`, :class:`FlowStep`) are plain pydantic
data, used by the pure flow, lead and format code. A site comes either from the
environment (one site, id ``CHATLEAD_SITE``, see :func:`load_sites`) or from a TOML
file (``CHATLEAD_CONFIG``, several sites). Every problem is one :class:`ConfigError`
line naming the variable or the site-file key, never a secret's value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .units import parse_duration

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "DEFAULT_FLOW",
    "FieldKind",
    "FieldProblem",
    "FlowStep",
    "ForwardPolicy",
    "Site",
    "Webhook",
    "WebhookFormat",
    "first_problem",
    "is_loopback",
    "load_sites",
    "no_site_message",
]


class FieldProblem(ValueError):
    """A rule across fields broken by one of them: the loaders name that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def first_problem(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """Where the first error is (field path) and what it says, never the value given."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, FieldProblem):
        loc = (*loc, cause.field)
    return loc, str(err["msg"]).removeprefix("Value error, ")


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
                raise FieldProblem(
                    field, f"{what or 'required'} for webhook format {self.format!r}"
                )
        if self.format == "external-lead" and self.template and self.url is None:
            raise FieldProblem("url", "required with a template")
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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        loc, message = first_problem(exc)
        raise ConfigError(f"{_env_name(str(loc[0]))}: {message}") from None
    _check_templates(hook, _env_name)
    return site


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
        loc, message = first_problem(exc)
        raise ConfigError(f"{key('webhook', *loc)}: {message}") from None
    _check_templates(hook, lambda name: key("webhook", name))
    try:
        return Site(id=site_id, webhook=hook, **raw)
    except ValidationError as exc:
        loc, message = first_problem(exc)
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


def no_site_message(site_id: str, sites: Iterable[str]) -> str:
    return f"no site {site_id!r}; known sites: {', '.join(sorted(sites))}"
