"""A fake Pulse CRM API that enforces what the Pulse Lead object (seed 001) requires.

* ``POST /auth/login`` with the right ``apiKey``/``apiSecret`` issues a token
  (under ``token`` or ``accessToken``, with ``expiresIn``); wrong ones: 401;
* every other call needs ``Authorization: Bearer <live token>`` (401 otherwise);
  ``expire_tokens()`` makes every issued token expire server-side;
* ``POST /leads`` needs non-empty ``firstName`` and ``lastName`` (422 otherwise);
* ``PATCH /leads/{id}`` updates the given properties (404 for an unknown id,
  422 when it blanks a name);
* ``GET /leads?email=`` answers a bare array, ``{"data": [...]}`` or
  ``{"leads": [...]}`` (``list_shape``);
* ``X-Account-Id`` of each request is kept in :attr:`seen` like every header.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from . import Answer, FakeServer, Seen

__all__ = ["FakePulse"]


class FakePulse(FakeServer):
    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        list_shape: Literal["array", "data", "leads"] = "array",
        token_field: Literal["token", "accessToken"] = "token",
        expires_in: float | None = 3600,
    ) -> None:
        super().__init__()
        self.api_key, self.api_secret = api_key, api_secret
        self.list_shape, self.token_field, self.expires_in = list_shape, token_field, expires_in
        self.tokens: set[str] = set()
        self.issued: list[str] = []
        self.leads: dict[int, dict[str, Any]] = {}
        self.next_id = 501

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    @property
    def logins(self) -> int:
        return len(self.requests("POST", "/auth/login"))

    def _login(self, body: Any) -> Answer:
        if not isinstance(body, dict) or (body.get("apiKey"), body.get("apiSecret")) != (
            self.api_key,
            self.api_secret,
        ):
            return Answer(401, {"error": "invalid credentials"})
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        self.issued.append(token)
        answer: dict[str, Any] = {self.token_field: token}
        if self.expires_in is not None:
            answer["expiresIn"] = self.expires_in
        return Answer(200, answer)

    def _list(self, email: str) -> Answer:
        found = [
            lead
            for lead in self.leads.values()
            if str(lead.get("email", "")).lower() == email.lower()
        ]
        if self.list_shape == "array":
            return Answer(200, found)
        return Answer(200, {self.list_shape: found, "total": len(found)})

    def _create(self, body: dict[str, Any]) -> Answer:
        if not body.get("firstName") or not body.get("lastName"):
            return Answer(422, {"error": "firstName and lastName are required"})
        lead_id, self.next_id = self.next_id, self.next_id + 1
        self.leads[lead_id] = {**body, "id": lead_id}
        return Answer(201, self.leads[lead_id])

    def _patch(self, tail: str, body: dict[str, Any]) -> Answer:
        if not tail.isdigit() or int(tail) not in self.leads:
            return Answer(404, {"error": "lead not found"})
        if any(k in body and not body[k] for k in ("firstName", "lastName")):
            return Answer(422, {"error": "firstName and lastName cannot be empty"})
        lead = self.leads[int(tail)]
        lead.update({k: v for k, v in body.items() if k != "id"})
        return Answer(200, lead)

    def handle(self, request: Seen) -> Answer:
        if request.method == "POST" and request.path == "/auth/login":
            return self._login(request.json)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return Answer(401, {"error": "unauthorized"})
        if request.method == "GET" and request.path == "/leads":
            return self._list(request.query.get("email", ""))
        if request.method == "POST" and request.path == "/leads":
            return self._create(request.json)
        if request.method == "PATCH" and request.path.startswith("/leads/"):
            return self._patch(request.path.removeprefix("/leads/"), request.json)
        return Answer(404, {"error": "no route"})
