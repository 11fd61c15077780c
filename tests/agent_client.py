"""A real agent-side client of ``/agent`` (CONTRACT §10) for the takeover tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets

from tests.conftest import admin_headers


class AgentClient:
    """An agent socket; collects every frame it receives."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}
        self._n = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, base: str, token: str, origin: str | None = None
    ) -> AsyncIterator[AgentClient]:
        url = base.replace("http://", "ws://") + "/agent"
        headers = {"Authorization": f"Bearer {token}"}
        async with websockets.connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
        ) as ws:
            agent = cls(ws)
            agent.hello = await agent.expect("hello")
            yield agent

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def expect(self, kind: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def join(self, session_id: str, **extra: Any) -> dict[str, Any]:
        """Join; return the ``session`` frame that shows it held (or the error)."""
        await self.send({"type": "join", "session_id": session_id, **extra})
        while True:
            frame = await self.recv()
            if frame["type"] == "error":
                return frame
            if frame["type"] == "session" and frame["session_id"] == session_id:
                if frame.get("agent"):
                    return frame

    async def say(self, session_id: str, text: str) -> dict[str, Any]:
        """Send a message; return its ack or error."""
        self._n += 1
        frame_id = f"m{self._n}"
        await self.send({"type": "message", "id": frame_id, "session_id": session_id, "text": text})
        while True:
            frame = await self.recv()
            if frame["type"] in ("ack", "error") and frame.get("id") == frame_id:
                return frame
            if frame["type"] == "error" and "id" not in frame:
                return frame


async def make_agent(base: str, redis_url: str, agent_id: str, **extra: Any) -> str:
    """A new agent through the API; its token."""
    async with httpx.AsyncClient(base_url=base, headers=admin_headers(redis_url)) as api:
        made = await api.post("/api/agents", json={"id": agent_id, "name": "Ana Diaz", **extra})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])
