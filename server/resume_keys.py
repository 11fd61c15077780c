"""Resume links' I/O edge (CONTRACT §11): the signing keys in Redis, links made and
checked against them, and the mark a link leaves on the session it reopens.

The keys are one JSON string (``keys.RESUME_KEYS``), made by whichever process needs
it first (``SET NX``: every process ends up with the same keys) and replaced whole by
:meth:`ResumeLinks.rotate` (``WATCH``/``MULTI``). Each process keeps a copy for
:data:`REFRESH_S`; a token under a key it does not know makes it read the keys again
(at most once a second), and a rotation tells every process to drop its copy
(``{"resume_keys": true}`` on ``keys.NOTIFY_CHANNEL``).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.exceptions import WatchError

from . import keys
from .redis_client import Translated
from .resume_links import (
    KeyRing,
    ResumeLink,
    expiry_of,
    link_maker,
    make_token,
    new_key,
    resume_url,
    verify_token,
)
from .scripts import script_source
from .session import token_hash

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from .protocol import Hello
    from .session import SessionRecord
    from .sites import Site
    from .store import Store

__all__ = ["REFRESH_S", "ResumeLinks"]

REFRESH_S = 60.0
"""How long a process trusts its copy of the keys."""
RELOAD_S = 1.0
"""Least time between two reads forced by tokens of unknown keys."""


class ResumeLinks:
    """Make and check resume links; ``base`` is ``PUBLIC_URL`` (or the server's own)."""

    def __init__(
        self, redis: aioredis.Redis, ttl_s: float, base: str, shards: int, retention_ms: int
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.base = base
        self.shards = shards
        self._ring: KeyRing | None = None
        self._read_at = 0.0
        self._mark = redis.register_script(script_source("link_resume"))
        self._step = redis.register_script(script_source("link_step"))
        self.retention_ms = retention_ms

    async def ring(self, *, fresh: bool = False) -> KeyRing:
        """The keys (made now if there are none yet)."""
        now = time.monotonic()
        if self._ring is not None and not fresh and now - self._read_at < REFRESH_S:
            return self._ring
        with Translated("reading the resume keys"):
            raw = await self.redis.get(keys.RESUME_KEYS)
            if raw is None:
                await self.redis.set(keys.RESUME_KEYS, KeyRing(new_key()).dumps(), nx=True)
                raw = await self.redis.get(keys.RESUME_KEYS)
        assert raw is not None
        self._ring, self._read_at = KeyRing.loads(raw), now
        return self._ring

    async def rotate(self) -> KeyRing:
        """A new current key; the current one stays accepted, the previous one dies."""
        with Translated("rotating the resume keys"):
            while True:
                async with self.redis.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(keys.RESUME_KEYS)
                        raw = await pipe.get(keys.RESUME_KEYS)
                        if raw is None:
                            ring = KeyRing(new_key())
                        else:
                            old = KeyRing.loads(raw)
                            ring = old.rotated(new_key(avoid=old.current.id))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(keys.RESUME_KEYS, ring.dumps())
                        await pipe.execute()
                    except WatchError:
                        continue
                self._ring, self._read_at = ring, time.monotonic()
                # every server drops its copy: the key rotated out dies everywhere at once
                await self.redis.publish(keys.NOTIFY_CHANNEL, json.dumps({"resume_keys": True}))
                return ring

    def forget(self) -> None:
        """Read the keys again before the next use (another process rotated them)."""
        self._ring = None

    def expiry_of(self, record: SessionRecord) -> int:
        """When the links of ``record`` die: ``RECOVERY_TTL`` after it was abandoned
        (after its last activity if it never was), in unix seconds."""
        return expiry_of(record.abandoned_ms or record.active_ms, self.ttl_s)

    async def token(self, record: SessionRecord) -> str:
        return make_token(await self.ring(), record.id, self.expiry_of(record))

    async def url(self, record: SessionRecord) -> str:
        """``<PUBLIC_URL>/r/<token>`` for the session."""
        return resume_url(self.base, await self.token(record))

    async def shown(self, record: SessionRecord) -> str | None:
        """The link the admin shows: an unfinished session's, until it expires."""
        if record.status.value == "completed" or self.expiry_of(record) <= time.time():
            return None
        return await self.url(record)

    async def maker(self) -> Callable[[str, int], str | None]:
        """Links for report rows (:func:`~chatlead.resume_links.link_maker`)."""
        return link_maker(await self.ring(), self.ttl_s, self.base, time.time())

    async def check(self, token: str) -> ResumeLink | None:
        """The link, or None when it is bad or expired (its session may still be gone:
        the caller looks)."""
        link = await self.authentic(token)
        return link if link is not None and link.expires_s > time.time() else None

    async def authentic(self, token: str) -> ResumeLink | None:
        """The link if one of our keys signed ``token``, expired or not."""
        ring = await self.ring()
        link = verify_token(ring, token)
        if link is None and time.monotonic() - self._read_at >= RELOAD_S:
            # maybe signed with a key another process made since we read ours
            fresh = await self.ring(fresh=True)
            if fresh != ring:
                link = verify_token(fresh, token)
        return link

    async def mark_resumed(self, session_id: str) -> str | None:
        """Note that a link reopened the session; its status, or None when it is gone."""
        shard = keys.shard_of(session_id, self.shards)
        with Translated("marking a link resume"):
            status = await self._mark(
                keys=[keys.session(shard, session_id)], args=[keys.tag(shard), self.retention_ms]
            )
        return status.decode() if isinstance(status, bytes) else status or None

    async def note_step(self, session_id: str, step: int) -> None:
        """The link opened was the one in reminder step ``step`` (the return, if the
        visitor comes back through it, counts as ``reminder:<step>``)."""
        key = keys.session(keys.shard_of(session_id, self.shards), session_id)
        with Translated("noting a reminder's link"):
            await self._step(keys=[key], args=[step])

    async def owns(self, token: str, record: SessionRecord, site: Site) -> bool:
        """``token`` is a live link to ``record``, a session of ``site`` (a widget that
        was resumed by a link keeps the link as its resume token)."""
        link = await self.check(token)
        return link is not None and link.session_id == record.id and record.site == site.id

    async def resume_by_link(
        self, store: Store, hello: Hello, site: Site
    ) -> tuple[SessionRecord, str] | None:
        """The session ``hello.resume`` links to, with the resume token its widget keeps;
        None when there is no such link, it is dead, or its session is another site's.

        A widget that already holds the session (the same device) continues from its
        ``last_seq`` with its own token; any other starts from the first message and
        keeps the link as its token (the session's own is only stored as a hash).
        """
        if not hello.resume:
            return None
        link = await self.check(hello.resume)
        if link is None:
            return None
        same = hello.session_id == link.session_id
        record = await store.load_session(link.session_id, hello.last_seq if same else 0)
        if record is None or record.site != site.id:
            return None
        if await self.mark_resumed(record.id) is None:  # erased meanwhile
            return None
        token = hello.resume
        if same and hello.resume_token and _own_token(record, hello.resume_token):
            token = hello.resume_token
        return record, token


def _own_token(record: SessionRecord, token: str) -> bool:
    return hmac.compare_digest(record.token_hash, token_hash(token))
