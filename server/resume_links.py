"""Resume links (CONTRACT §11): signed tokens that reopen one session, with no I/O.

A token is base64url (no padding) of ``version | key id | expiry | session id | mac``:
one version byte, the 4-byte id of the key that signed it, the expiry in unix seconds
(4 bytes, big-endian), the session id (12 bytes: sessions are 24 hex digits) and the
HMAC-SHA256 of everything before it under that key. 53 bytes, 71 characters.

Two keys live at once (:class:`KeyRing`): links are signed with the current one and
accepted under the current or the previous one, so rotating the key (the previous is
dropped, the current becomes the previous) breaks no link made since the last rotation.
The mac is compared in constant time (:func:`hmac.compare_digest`); every bad token --
truncated, padded, forged, of unknown key, expired -- is the same :data:`None`.

Whether the session still exists (an erased session's links die with it) and which
site it belongs to are checked by the caller, who reads the store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "FRAGMENT",
    "KeyRing",
    "ResumeKey",
    "ResumeLink",
    "check_token",
    "expiry_of",
    "fragment_url",
    "link_maker",
    "make_token",
    "new_key",
    "page_origin",
    "redirect_target",
    "resume_url",
    "verify_token",
]

VERSION = 1
FRAGMENT = "chatlead-resume="
"""What the widget looks for in a page's fragment (``#chatlead-resume=<token>``)."""
_DOMAIN = b"chatlead resume link\x00"
"""Signed before the token's bytes: a mac made for anything else never matches."""
_PREFIX = 1 + 4 + 4 + 12
_MAC = 32
TOKEN_BYTES = _PREFIX + _MAC
TOKEN_CHARS = 71
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{71}$")
_SESSION = re.compile(r"^[0-9a-f]{24}$")


@dataclass(frozen=True)
class ResumeKey:
    """One signing key: a 32-bit id (carried in tokens) and 32 random bytes."""

    id: int
    secret: bytes

    def to_json(self) -> dict[str, str | int]:
        return {"id": self.id, "secret": base64.b64encode(self.secret).decode()}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> ResumeKey:
        key_id, secret = raw.get("id"), raw.get("secret")
        if not isinstance(key_id, int) or not isinstance(secret, str):
            raise ValueError("a resume key needs an integer id and a base64 secret")
        return cls(key_id, base64.b64decode(secret))


@dataclass(frozen=True)
class KeyRing:
    """The current key (signs) and the previous one (still accepted), if any."""

    current: ResumeKey
    previous: ResumeKey | None = None

    def find(self, key_id: int) -> ResumeKey | None:
        for key in (self.current, self.previous):
            if key is not None and key.id == key_id:
                return key
        return None

    def rotated(self, fresh: ResumeKey) -> KeyRing:
        """``fresh`` signs from now on; the current key is still accepted."""
        return KeyRing(fresh, self.current)

    def dumps(self) -> str:
        previous = self.previous.to_json() if self.previous else None
        return json.dumps({"current": self.current.to_json(), "previous": previous})

    @classmethod
    def loads(cls, text: str | bytes) -> KeyRing:
        raw = json.loads(text)
        previous = raw.get("previous")
        return cls(
            ResumeKey.from_json(raw["current"]),
            ResumeKey.from_json(previous) if previous else None,
        )


@dataclass(frozen=True)
class ResumeLink:
    """What a good token says: the session, when the link dies, which key signed it."""

    session_id: str
    expires_s: int
    key_id: int


def new_key(avoid: int | None = None) -> ResumeKey:
    """A random key (its id differs from ``avoid``, the key it replaces)."""
    while True:
        key_id = secrets.randbits(32)
        if key_id != avoid:
            return ResumeKey(key_id, secrets.token_bytes(32))


def _mac(key: ResumeKey, body: bytes) -> bytes:
    return hmac.new(key.secret, _DOMAIN + body, hashlib.sha256).digest()


def make_token(ring: KeyRing, session_id: str, expires_s: int) -> str:
    """A token for ``session_id`` valid until ``expires_s`` (unix seconds).

    Raises:
        ValueError: ``session_id`` is not a session id (24 hex digits).
    """
    if not _SESSION.match(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    key = ring.current
    body = struct.pack(">BII", VERSION, key.id, expires_s) + bytes.fromhex(session_id)
    return base64.urlsafe_b64encode(body + _mac(key, body)).decode().rstrip("=")


def verify_token(ring: KeyRing, token: str) -> ResumeLink | None:
    """The link ``token`` stands for if one of ``ring``'s keys signed it, expired or not;
    None when it is malformed, of an unknown key or forged."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    # one spelling per token: base64 ignores a last character's spare bits, so without
    # this several strings would open the same link
    if len(raw) != TOKEN_BYTES or base64.urlsafe_b64encode(raw).decode().rstrip("=") != token:
        return None
    body, mac = raw[:_PREFIX], raw[_PREFIX:]
    version, key_id, expires_s = struct.unpack(">BII", body[:9])
    key = ring.find(key_id)
    if version != VERSION or key is None:
        return None
    if not hmac.compare_digest(mac, _mac(key, body)):
        return None
    return ResumeLink(body[9:].hex(), expires_s, key_id)


def check_token(ring: KeyRing, token: str, now_s: float) -> ResumeLink | None:
    """The link ``token`` stands for, or None: malformed, unknown key, forged, expired."""
    link = verify_token(ring, token)
    return link if link is not None and link.expires_s > now_s else None


def expiry_of(since_ms: int, ttl_s: float) -> int:
    """When the links of a session abandoned (or last active) at ``since_ms`` die: unix
    seconds. The same for every retry of one abandonment's event, and for its report row."""
    return int(since_ms / 1000 + ttl_s)


def link_maker(
    ring: KeyRing, ttl_s: float, base: str, now_s: float
) -> Callable[[str, int], str | None]:
    """``link(session id, abandoned ms)``: its resume URL, or None once it has expired
    (for many rows at once: the report and its CSV)."""

    def link(session_id: str, since_ms: int) -> str | None:
        expires = expiry_of(since_ms, ttl_s)
        if expires <= now_s or not _SESSION.match(session_id):
            return None
        return resume_url(base, make_token(ring, session_id, expires))

    return link


def resume_url(base: str, token: str) -> str:
    """``<base>/r/<token>`` (``base``: ``PUBLIC_URL``)."""
    return f"{base.rstrip('/')}/r/{token}"


def fragment_url(page_url: str, token: str) -> str:
    """``page_url`` with its fragment replaced by ``#chatlead-resume=<token>``."""
    parts = urlsplit(page_url)
    return urlunsplit(parts._replace(fragment=FRAGMENT + token))


def page_origin(page_url: str) -> str | None:
    """``scheme://host[:port]`` of an ``http(s)`` URL, as browsers send ``Origin``."""
    try:
        parts = urlsplit(page_url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None  # never send a visitor to a URL that carries credentials
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def redirect_target(page_url: str | None, allowed_origins: tuple[str, ...]) -> str | None:
    """The page to send a link's visitor back to, or None (serve our own chat page).

    Only an origin the site names explicitly counts: a ``*`` allow-list lets any page
    embed the widget, and a redirect to any page would be an open redirect.
    """
    if not page_url:
        return None
    origin = page_origin(page_url)
    if origin is None or origin not in allowed_origins or origin == "*":
        return None
    return page_url
