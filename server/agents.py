"""Agents (CONTRACT §10): people who may watch live chats of their sites and answer them.

An agent has an id, a name, the sites it may see (empty: every site) and a token,
shown once when it is made and kept only as its SHA-256 (tokens are 256 random bits:
a fast hash is enough, and a lookup by hash leaks nothing about other tokens). The
admin token acts as agent ``admin`` for every site.

Redis: hash :data:`keys.AGENTS` (id -> the agent as JSON) and hash
:data:`keys.AGENT_TOKENS` (token hash -> id), changed together in one MULTI. A removal
is published on the notification channel so every process closes that agent's
sockets at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import keys

if TYPE_CHECKING:
    from collections.abc import Collection

    from redis.asyncio import Redis

__all__ = [
    "ADMIN_AGENT",
    "AGENT_COOKIE",
    "Agent",
    "AgentMade",
    "AgentList",
    "Agents",
    "agent_problem",
    "hash_token",
]

ADMIN_AGENT = "admin"
"""The id the admin token acts as."""
AGENT_COOKIE = "chatlead_agent"
"""An agent's login cookie (the console is the only page it opens)."""
_AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
MAX_NAME = 80
TOKEN_PREFIX = "agt_"


@dataclass(frozen=True)
class Agent:
    """An agent as the API lists it (never its token)."""

    id: str
    name: str
    sites: list[str]
    """The sites it may see; empty: every site."""
    created: int
    """Milliseconds since the epoch."""

    def may_see(self, site_id: str) -> bool:
        return not self.sites or site_id in self.sites


@dataclass(frozen=True)
class AgentMade:
    """``POST /api/agents``: the new agent and its token, shown this once."""

    id: str
    name: str
    token: str


@dataclass(frozen=True)
class AgentList:
    """``GET /api/agents``: every agent, oldest first."""

    items: list[Agent]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def agent_problem(
    agent_id: object, name: object, sites: object, known: Collection[str]
) -> tuple[str, str] | None:
    """``(key, why)`` when an agent's fields are wrong, else ``None`` (pure)."""
    if not isinstance(agent_id, str) or not _AGENT_ID.match(agent_id):
        return "id", "use lowercase letters, digits, '.', '-' and '_' (up to 40)"
    if agent_id == ADMIN_AGENT:
        return "id", f"{ADMIN_AGENT!r} is the admin token's own agent"
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        return "name", f"required: 1 to {MAX_NAME} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "name", "no control characters"
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        return "sites", "a list of site ids"
    unknown = [s for s in sites if s not in known]
    if unknown:
        return "site", f"unknown site {unknown[0]!r}"
    return None


class Agents:
    """The agents in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def add(self, agent_id: str, name: str, sites: list[str]) -> AgentMade | None:
        """A new agent and its token; ``None`` when the id is taken."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        agent = Agent(agent_id, name.strip(), sorted(set(sites)), int(time.time() * 1000))
        record = json.dumps({**asdict(agent), "token_hash": hash_token(token)})
        if not await self.redis.hsetnx(keys.AGENTS, agent_id, record):
            return None
        await self.redis.hset(keys.AGENT_TOKENS, hash_token(token), agent_id)
        return AgentMade(agent.id, agent.name, token)

    async def all(self) -> list[Agent]:
        raw = await self.redis.hgetall(keys.AGENTS)
        agents = [_agent(json.loads(value)) for value in raw.values()]
        return sorted(agents, key=lambda a: (a.created, a.id))

    async def remove(self, agent_id: str) -> bool:
        """Delete the agent; its token stops working now and its sockets are told to close."""
        raw = await self.redis.hget(keys.AGENTS, agent_id)
        if raw is None:
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.AGENTS, agent_id)
            pipe.hdel(keys.AGENT_TOKENS, json.loads(raw)["token_hash"])
            await pipe.execute()
        await self.redis.publish(keys.NOTIFY_CHANNEL, json.dumps({"agent_removed": agent_id}))
        return True

    async def cookie_for(self, agent: Agent, now_s: int, ttl_s: int) -> str | None:
        """A login cookie value for ``agent`` (None: it is gone). Signed with its token's
        hash, so it dies with the agent, and with the expiry in it."""
        raw = await self.redis.hget(keys.AGENTS, agent.id)
        if raw is None:
            return None
        expiry = now_s + ttl_s
        return f"{agent.id}.{expiry}.{_cookie_mac(json.loads(raw)['token_hash'], agent.id, expiry)}"

    async def by_cookie(self, value: str, now_s: int) -> Agent | None:
        """The agent whose login cookie this is, while it lasts, or ``None``."""
        agent_id, _, rest = value.partition(".")
        expiry, _, mac = rest.partition(".")
        if not _AGENT_ID.match(agent_id) or not expiry.isdigit() or int(expiry) < now_s:
            return None
        raw = await self.redis.hget(keys.AGENTS, agent_id)
        if raw is None:
            return None
        record = json.loads(raw)
        expected = _cookie_mac(str(record.get("token_hash", "")), agent_id, int(expiry))
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        return _agent(record)

    async def by_token(self, token: str) -> Agent | None:
        """The agent whose token this is, or ``None``."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        agent_id = await self.redis.hget(keys.AGENT_TOKENS, digest)
        if agent_id is None:
            return None
        raw = await self.redis.hget(keys.AGENTS, agent_id)
        if raw is None:
            return None
        record = json.loads(raw)
        if not hmac.compare_digest(str(record.get("token_hash", "")), digest):
            return None
        return _agent(record)


def _cookie_mac(token_hash: str, agent_id: str, expiry: int) -> str:
    message = f"chatlead-agent-login:{agent_id}:{expiry}"
    return hmac.new(token_hash.encode(), message.encode(), hashlib.sha256).hexdigest()


def _agent(record: dict[str, object]) -> Agent:
    sites = record.get("sites") or []
    created = record.get("created") or 0
    return Agent(
        str(record["id"]),
        str(record["name"]),
        [str(s) for s in sites] if isinstance(sites, list) else [],
        int(created) if isinstance(created, int | float | str) else 0,
    )
