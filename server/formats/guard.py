"""Server-side request forgery guard for delivery targets (CONTRACT §5, delivery rules).

A webhook URL comes from site configuration, but the address it resolves to can
change at any time (DNS). Unless a site sets ``allow_private``, every delivery
attempt first checks that the target is ``https`` and that *every* address its
host resolves to right now is a public unicast address, so a lead is never posted
to loopback, a private network, link-local metadata services (169.254.169.254)
or multicast. IPv6 forms that embed an IPv4 address (IPv4-mapped
``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by
the embedded address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from server.errors import DeliveryError

__all__ = ["check_target", "is_public_address"]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr.sixtofour


def _public(addr: _Address) -> bool:
    # ``is_global`` alone lets multicast (224.0.0.0/4, ff00::/8) through.
    return addr.is_global and not (
        addr.is_multicast
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_reserved
        or addr.is_unspecified
    )


def is_public_address(ip: str) -> bool:
    """Whether ``ip`` (an IPv4 or IPv6 literal, zone id allowed) is a public unicast address.

    Anything that does not parse is not public.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            return _public(embedded)
    return _public(addr)


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int) -> list[str]:
    if _literal(host):
        return [host]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        # Same class httpx raises for a failed lookup: the caller retries it
        # like any other connection error instead of dead-lettering.
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
    return [str(info[4][0]) for info in infos]


async def check_target(url: str, allow_private: bool) -> None:
    """Refuse to deliver to ``url`` unless it is ``https`` on public addresses only.

    With ``allow_private`` (development, tests) any ``http``/``https`` URL passes.
    The host is resolved now, at send time, and every address it resolves to is
    checked, not just the first.

    Raises:
        DeliveryError: the scheme or an address is not allowed (the message says which).
        httpx.ConnectError: the host name could not be resolved (a retryable condition).
    """
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        # Only the scheme is quoted: a webhook URL may carry a token in its path.
        raise DeliveryError(
            f"webhook url must be an http(s) URL with a host (scheme {scheme or 'missing'!r})"
        )
    if allow_private:
        return
    if scheme != "https":
        raise DeliveryError(
            f"webhook url must use https (set allow_private for http targets): {host}"
        )
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise DeliveryError(f"webhook url has a bad port: {host}") from exc
    addresses = await _resolve(host, port)
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}: no addresses")
    blocked = sorted({ip for ip in addresses if not is_public_address(ip)})
    if blocked:
        raise DeliveryError(
            f"webhook host {host} resolves to a non-public address ({', '.join(blocked)}); "
            "set allow_private to deliver to private networks"
        )
