"""Server-side request forgery guard for delivery targets (docs/ARCHITECTURE.md, Delivery).

A webhook URL comes from site configuration, but the address it resolves to can
change at any time (DNS). Unless a site sets ``allow_private``, every delivery
attempt first checks that the target is ``https`` and that *every* address its
host resolves to right now is a public unicast address, so a lead is never posted
to loopback, a private network, link-local metadata services (169.254.169.254)
or multicast. IPv6 forms that embed an IPv4 address (IPv4-mapped
``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by
the embedded address.

The check and the connection must see the same address, or a DNS answer that
changes between them (rebinding) would send the lead wherever the second answer
points. Deliveries therefore go through :class:`PinnedBackend`: httpx's network
backend, which resolves each host once, checks every address, and connects to a
checked one; TLS still verifies, and sends SNI for, the URL's host name.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from ..errors import DeliveryError

__all__ = ["PinnedBackend", "check_target", "check_url", "is_public_address", "pinned_client"]

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


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (an IP literal resolves to itself)."""
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


def check_url(url: str, allow_private: bool) -> None:
    """Refuse ``url`` unless it is ``https`` with a host (``http`` too with ``allow_private``).

    Raises:
        DeliveryError: the scheme, host or port is not allowed (the message says which).
    """
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        # Only the scheme is quoted: a webhook URL may carry a token in its path.
        raise DeliveryError(
            f"webhook url must be an http(s) URL with a host (scheme {scheme or 'missing'!r})"
        )
    if not allow_private and scheme != "https":
        raise DeliveryError(
            f"webhook url must use https (set allow_private for http targets): {host}"
        )
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise DeliveryError(f"webhook url has a bad port: {host}") from exc


def _refuse_blocked(host: str, addresses: list[str]) -> None:
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}: no addresses")
    blocked = sorted({ip for ip in addresses if not is_public_address(ip)})
    if blocked:
        raise DeliveryError(
            f"webhook host {host} resolves to a non-public address ({', '.join(blocked)}); "
            "set allow_private to deliver to private networks"
        )


async def check_target(url: str, allow_private: bool, resolve: Resolver = system_resolve) -> None:
    """:func:`check_url`, then resolve the host now and check every address, not just the first.

    Raises:
        DeliveryError: the scheme or an address is not allowed (the message says which).
        httpx.ConnectError: the host name could not be resolved (a retryable condition).
    """
    check_url(url, allow_private)
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    _refuse_blocked(host, await resolve(host, parts.port or 443))


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once and connects to the address it resolved (and, if asked, checked).

    With ``public_only`` every address must be public. httpcore asks the backend for
    a TCP stream to ``host:port`` and then starts TLS on it with the URL's host
    name, so connecting to the resolved IP keeps certificate checks, SNI and the
    ``Host`` header as they were.
    """

    def __init__(self, *, public_only: bool, resolve: Resolver = system_resolve) -> None:
        self._public_only = public_only
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except httpx.ConnectError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        if self._public_only:
            _refuse_blocked(host, addresses)
        return await self._inner.connect_tcp(
            addresses[0].split("%", 1)[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DeliveryError("webhook targets are TCP addresses")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """One verifying TLS context for every delivery client (loading the CA bundle
    takes tens of milliseconds; the delivery loop has dozens of clients)."""
    return httpx.create_ssl_context()


def pinned_client(
    timeout: float,
    *,
    public_only: bool,
    resolve: Resolver = system_resolve,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose connections go through a :class:`PinnedBackend`."""
    tls = ssl_context or _default_tls()
    transport = httpx.AsyncHTTPTransport(verify=tls)
    limits = httpx.Limits()  # the transport's defaults
    # httpx builds its pool without a way to pass a network backend; this is the
    # same pool with ours (the pool is the transport's one moving part).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PinnedBackend(public_only=public_only, resolve=resolve),
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
