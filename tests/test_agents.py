"""Agents (CONTRACT §10): added, listed and removed through the API and the CLI; tokens
shown once, kept hashed, dead the moment the agent is removed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from chatlead import keys
from chatlead.agents import Agents, agent_problem, hash_token

from tests.conftest import admin_headers


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (("maria", "María José", []), None),
        (("maria.g-2", "M", ["default"]), None),
        (("Maria", "M", []), "id"),
        (("", "M", []), "id"),
        (("a" * 41, "M", []), "id"),
        (("admin", "M", []), "id"),
        ((7, "M", []), "id"),
        (("maria", "", []), "name"),
        (("maria", "   ", []), "name"),
        (("maria", "x" * 81, []), "name"),
        (("maria", "Mar\nia", []), "name"),
        (("maria", "M", "default"), "sites"),
        (("maria", "M", [3]), "sites"),
        (("maria", "M", ["nope"]), "site"),
    ],
)
def test_agent_fields(fields: tuple[Any, Any, Any], problem: str | None) -> None:
    found = agent_problem(*fields, known={"default"})
    assert (found[0] if found else None) == problem


async def test_the_api_adds_lists_and_removes_agents(app_factory: Any, redis_url: str) -> None:
    app = await app_factory()
    store = aioredis.from_url(redis_url)
    pubsub = store.pubsub()
    await pubsub.subscribe(keys.NOTIFY_CHANNEL)
    try:
        async with httpx.AsyncClient(base_url=app.base, headers=admin_headers(redis_url)) as api:
            made = await api.post(
                "/api/agents", json={"id": "maria", "name": "María", "sites": ["default"]}
            )
            assert made.status_code == 201
            body = made.json()
            assert set(body) == {"id", "name", "token"} and body["token"].startswith("agt_")
            token = body["token"]

            listed = (await api.get("/api/agents")).json()["items"]
            assert [(a["id"], a["name"], a["sites"]) for a in listed] == [
                ("maria", "María", ["default"])
            ]
            assert token not in json.dumps(listed)
            stored = json.dumps(
                {k.decode(): v.decode() for k, v in (await store.hgetall(keys.AGENTS)).items()}
            )
            assert token not in stored and hash_token(token) in stored  # kept hashed only

            agents = Agents(store)
            assert (await agents.by_token(token)).id == "maria"  # type: ignore[union-attr]
            assert await agents.by_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
            assert await agents.by_token("whsec_nope") is None

            again = await api.post("/api/agents", json={"id": "maria", "name": "Other"})
            assert again.status_code == 409
            assert (await agents.by_token(token)) is not None  # the first one is untouched

            gone = await api.delete("/api/agents/maria")
            assert gone.status_code == 204
            assert await agents.by_token(token) is None  # at once
            assert (await api.get("/api/agents")).json()["items"] == []
            assert (await api.delete("/api/agents/maria")).status_code == 404

            notices = []
            for _ in range(20):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message:
                    notices.append(json.loads(message["data"]))
                if {"agent_removed": "maria"} in notices:
                    break
            assert {"agent_removed": "maria"} in notices  # every process closes its sockets
    finally:
        await pubsub.aclose()
        await store.aclose()


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"name": "M"}, 400, "id"),
        ({"id": "admin", "name": "M"}, 400, "id"),
        ({"id": "m", "name": ""}, 400, "name"),
        ({"id": "m", "name": "M", "sites": ["nope"]}, 404, "site"),
        ({"id": "m", "name": "M", "sites": "default"}, 400, "sites"),
        ({"id": "m", "name": "M", "role": "owner"}, 400, "role"),
        ([], 400, "body"),
    ],
)
async def test_bad_agents_get_a_clear_error(
    app_factory: Any, redis_url: str, body: Any, status: int, param: str
) -> None:
    app = await app_factory()
    async with httpx.AsyncClient(base_url=app.base, headers=admin_headers(redis_url)) as api:
        answer = await api.post("/api/agents", json=body)
        assert (answer.status_code, answer.json()["param"]) == (status, param)
        assert (await api.get("/api/agents")).json()["items"] == []
    async with httpx.AsyncClient(base_url=app.base) as anonymous:
        assert (
            await anonymous.post("/api/agents", json={"id": "x", "name": "X"})
        ).status_code == 401


async def test_the_cli_manages_agents(redis_url: str, rds: aioredis.Redis) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        env = {"CHATLEAD_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            [sys.executable, "-m", "chatlead", "agents", *argv],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )

    added = await asyncio.to_thread(run, "add", "bob", "Bob B.", "--site", "default")
    assert added.returncode == 0
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("agt_")
    listed = await asyncio.to_thread(run, "list")
    assert "bob" in listed.stdout and "Bob B." in listed.stdout and token not in listed.stdout
    assert (await asyncio.to_thread(run, "add", "bob", "Again")).returncode == 2
    unknown = await asyncio.to_thread(run, "add", "eve", "Eve", "--site", "nope")
    assert unknown.returncode == 2 and "unknown site 'nope'" in unknown.stderr
    assert (await asyncio.to_thread(run, "remove", "bob")).returncode == 0
    assert await Agents(rds).by_token(token) is None
    missing = await asyncio.to_thread(run, "remove", "bob")
    assert missing.returncode == 2 and "no agent 'bob'" in missing.stderr
