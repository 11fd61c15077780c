"""One-click unsubscribe from reminder emails (CONTRACT §11, RFC 8058).

A token names a site and the SHA-256 of a lowercased address, signed with HMAC-SHA256
under a key kept in Redis (``keys.UNSUBSCRIBE_KEY``, made at first use with ``SET NX``):
``<site>.<address hash, base64url>.<MAC, base64url>``. It carries no address, so the
link in a forwarded mail reveals nothing. Using it adds the hash to the site's
suppression set (``keys.suppressed``): no reminder goes to that address from that site.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import keys
from .redis_client import Translated

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "Unsubscribe",
    "address_hash",
    "make_token",
    "unsubscribe_url",
    "verify_token",
]

_SITE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAC_BYTES = 16


def address_hash(address: str) -> str:
    """SHA-256 hex of the lowercased, stripped address (what the suppression set holds)."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, site: str, digest: bytes) -> bytes:
    return hmac.new(key, b"unsubscribe\x00" + site.encode() + b"\x00" + digest, "sha256").digest()


def make_token(key: bytes, site: str, address: str) -> str:
    digest = bytes.fromhex(address_hash(address))
    return f"{site}.{_b64(digest)}.{_b64(_mac(key, site, digest)[:_MAC_BYTES])}"


@dataclass(frozen=True)
class Target:
    """Who a valid token unsubscribes: a site and an address hash (hex)."""

    site: str
    address_hash: str


def verify_token(key: bytes, token: str) -> Target | None:
    """The target of ``token``, or None when it is malformed or not signed with ``key``."""
    parts = token.split(".")
    if len(parts) != 3 or not _SITE.match(parts[0]) or len(token) > 200:
        return None
    site, digest_text, mac_text = parts
    try:
        digest, mac = _unb64(digest_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        return None
    if len(digest) != 32 or len(mac) != _MAC_BYTES:
        return None
    if not hmac.compare_digest(mac, _mac(key, site, digest)[:_MAC_BYTES]):
        return None
    return Target(site, digest.hex())


def unsubscribe_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/u/{token}"


class Unsubscribe:
    """The key in Redis, tokens made and checked with it, and the suppression sets."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._key: bytes | None = None

    async def key(self) -> bytes:
        if self._key is None:
            with Translated("reading the unsubscribe key"):
                await self.redis.set(keys.UNSUBSCRIBE_KEY, secrets.token_hex(32), nx=True)
                raw = await self.redis.get(keys.UNSUBSCRIBE_KEY)
            assert raw is not None
            self._key = bytes.fromhex(raw.decode() if isinstance(raw, bytes) else raw)
        return self._key

    async def url(self, base: str, site: str, address: str) -> str:
        return unsubscribe_url(base, make_token(await self.key(), site, address))

    async def check(self, token: str) -> Target | None:
        return verify_token(await self.key(), token)

    async def suppress(self, site: str, digest: str) -> None:
        with Translated("suppressing an address"):
            await self.redis.sadd(keys.suppressed(site), digest)

    async def is_suppressed(self, site: str, address: str) -> bool:
        with Translated("reading the suppressed addresses"):
            return bool(await self.redis.sismember(keys.suppressed(site), address_hash(address)))
