"""Webhook targets checked at start: what every delivery would refuse stops the start.

Deliveries check again as they connect (DNS may change); this is the early, named
error a person fixing the configuration needs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import ConfigError
from .sites import WEBHOOK

if TYPE_CHECKING:
    from .config import Settings
    from .sites import Destination, Site

__all__ = ["check_targets"]


def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _names(
    settings: Settings, site: Site, destination: Destination, key: str = "url"
) -> tuple[str, str]:
    """How an error names a destination's ``key`` (its url, or the option a format
    connects to instead), and the setting that allows private ones."""
    if settings.config is None:
        if key != "url":
            return f"CHATLEAD_{key.upper()}", "set CHATLEAD_WEBHOOK_ALLOW_PRIVATE=true"
        if destination.format == "slack" and destination.name == "slack":
            return "CHATLEAD_SLACK_WEBHOOK_URL", "set CHATLEAD_WEBHOOK_ALLOW_PRIVATE=true"
        return "CHATLEAD_WEBHOOK_URL", "set CHATLEAD_WEBHOOK_ALLOW_PRIVATE=true"
    if destination.name == WEBHOOK:
        table = f"sites.{site.id}.webhook"
        return f"{settings.config}: {table}.{key}", f"set allow_private = true in [{table}]"
    table = f"sites.{site.id}.destinations.{destination.name}"
    return f"{settings.config}: {table}.{key}", f"set allow_private = true in {table}"


def _target(destination: Destination) -> tuple[str, str] | None:
    """The address a destination connects to and the key that holds it: ``url``, or the
    option its format declares instead (``Format.target``, e.g. ``salesforce_login_url``)."""
    if destination.is_inbox:
        return None
    from . import formats  # loaded already: the destination's options came from it

    key = formats.get(destination.format).target
    if key is None:
        return (destination.url, "url") if destination.url else None
    value = getattr(destination.options, key, None)
    return (value, key) if isinstance(value, str) else None


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
        (site, destination, target)
        for site in sites.values()
        for destination in site.destinations
        if not destination.allow_private and (target := _target(destination)) is not None
    ]
    if not checked:
        return warnings  # and the CLI starts faster: no HTTP client to import
    from .formats.guard import is_public_address

    for site, destination, (url, key) in checked:
        name, allow = _names(settings, site, destination, key)
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
