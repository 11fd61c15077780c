"""Sites: from the environment (one site, id ``CHATLEAD_SITE``) or a TOML file
(``CHATLEAD_CONFIG``, several sites), read once at start.

Every problem is reported as one :class:`ConfigError` line naming the setting, or the
file, site, destination and key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import formats
from .conditions import DERIVED_FIELDS, fields_named
from .config import Settings
from .errors import ConfigError
from .hooks import HOOK_PREFIX
from .sites import (
    LEAD_EVENTS,
    WEBHOOK,
    Destination,
    FieldProblem,
    Site,
    first_problem,
)

__all__ = ["ALERTS", "check_outgoing", "load_sites"]


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
        if site.recovery is not None and site.recovery.reminders and not settings.smtp_url:
            raise ConfigError(
                f"CHATLEAD_SMTP_URL: required by the reminders of site {site.id!r} "
                f"(sites.{site.id}.recovery.reminders)"
            )
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
    for duration in ("idle_timeout", "agent_wait"):
        if isinstance(raw.get(duration), int | float):
            raw[duration] = str(raw[duration])  # refused: a number has no unit
    where = f"{path}: sites.{site_id}."
    if isinstance(raw.get("recovery"), dict):
        raw["recovery"] = {"allow_private": settings.webhook_allow_private, **raw["recovery"]}

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
    try:
        site.check_texts()
    except FieldProblem as exc:
        raise ConfigError(f"{key(exc.field)}: {exc}") from None
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
