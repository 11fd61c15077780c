"""Identified visitors (CONTRACT §13): who a session's ``userId`` is.

A site with ``identity_secret`` lets the page name its signed-in user on the tag
(``data-user-id`` + ``data-user-hash``, the hex HMAC-SHA256 of the id under that secret);
the widget sends both in ``hello.identity``. A matching hash makes the id the session's
``userId``, and the session joins that user's history (what an agent sees). Anything
else leaves the visitor anonymous: the browser's own random id, which on such a site is
kept apart from every identified id (``v_`` + a digest of it), so a page cannot take a
user's id by naming it. Pure functions; the socket applies them and logs mismatches.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

__all__ = ["Identity", "Resolved", "parse_identity", "resolve", "user_hash"]

MAX_USER_ID = 128
_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Identity:
    """What the tag claims: a user id and its hash."""

    user_id: str
    hash: str


@dataclass(frozen=True)
class Resolved:
    user_id: str
    identified: bool
    """The id is the site's own, proven by the hash."""
    mismatch: bool = False
    """An identity was claimed and did not hold (logged, never refused)."""


def user_hash(secret: str, user_id: str) -> str:
    """The hex HMAC-SHA256 a site's own server puts on the tag for ``user_id``."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def parse_identity(raw: object) -> Identity | None:
    """``hello.identity``: ``{"id": <1–128 characters>, "hash": <64 hex>}``. No usable
    id is no claim (lenient, like the attribution); a hash that is not 64 hex digits is
    kept as ``""``, a claim that cannot hold."""
    if not isinstance(raw, dict):
        return None
    user_id, digest = raw.get("id"), raw.get("hash")
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID:
        return None
    if _CONTROL.search(user_id):
        return None
    proof = digest.lower() if isinstance(digest, str) and _HASH.match(digest) else ""
    return Identity(user_id, proof)


def resolve(
    site_id: str,
    secret: str | None,
    claimed: Identity | None,
    anonymous: str | None,
    fresh: str,
) -> Resolved:
    """The session's ``userId``: the claimed id when ``secret`` proves it, else the
    browser's ``anonymous`` id (on a site with a secret, a digest of it), else ``fresh``.

    ``claimed`` counts as a mismatch when it is given and does not hold; a claim on a
    site without a secret is ignored as well (it cannot be checked).
    """
    if claimed is not None and secret:
        if hmac.compare_digest(user_hash(secret, claimed.user_id), claimed.hash):
            return Resolved(claimed.user_id, identified=True)
    mismatch = claimed is not None
    if not anonymous:
        return Resolved(fresh, identified=False, mismatch=mismatch)
    if not secret:
        return Resolved(anonymous, identified=False, mismatch=mismatch)
    digest = hashlib.sha256(f"{site_id}\x00{anonymous}".encode()).hexdigest()[:16]
    return Resolved("v_" + digest, identified=False, mismatch=mismatch)
