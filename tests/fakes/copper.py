"""A fake Copper developer API that enforces what Copper's documentation requires.

* every call needs ``X-PW-AccessToken``, ``X-PW-Application: developer_api`` and
  ``X-PW-UserEmail`` matching the configured user (401 otherwise) and a JSON
  ``Content-Type`` (415 otherwise);
* ``POST /leads`` creates; ``name`` is required (422 without);
* ``PUT /leads/upsert`` with ``match {"field_name": "email"}`` updates the one lead
  with that email or creates one (same email -> same id; several -> 422);
* ``PUT /leads/{id}`` updates only the given properties; unknown id -> 404;
* ``fail_with_429(n)``: the next ``n`` calls answer 429 with no rate headers,
  as Copper does; ``per_minute`` enforces Copper's rolling-window limit.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from . import Answer, FakeServer, Seen

__all__ = ["FakeCopper"]


class FakeCopper(FakeServer):
    def __init__(self, api_key: str, user_email: str, per_minute: int | None = None) -> None:
        super().__init__()
        self.api_key, self.user_email, self.per_minute = api_key, user_email, per_minute
        self.leads: dict[int, dict[str, Any]] = {}
        self.next_id = 9000001
        self.pending_429 = 0
        self.recent: deque[float] = deque()

    @property
    def base(self) -> str:
        """The API base URL, as configured in ``webhook.url``."""
        return self.url + "/developer_api/v1"

    def fail_with_429(self, times: int) -> None:
        with self.lock:
            self.pending_429 = times

    def delete(self, lead_id: int) -> None:
        with self.lock:
            del self.leads[lead_id]

    # -- decisions --------------------------------------------------------------

    def _refuse(self, request: Seen) -> Answer | None:
        h = request.headers
        if (
            h.get("x-pw-accesstoken") != self.api_key
            or h.get("x-pw-application") != "developer_api"
            or h.get("x-pw-useremail") != self.user_email
        ):
            return Answer(401, {"success": False, "status": 401, "message": "Unauthorized"})
        if not h.get("content-type", "").startswith("application/json"):
            return Answer(415, {"message": "Content-Type must be application/json"})
        if self.pending_429:
            self.pending_429 -= 1
            return Answer(429, {"success": False, "status": 429, "message": "Rate limit exceeded"})
        if self.per_minute is not None:
            now = time.monotonic()
            while self.recent and self.recent[0] <= now - 60:
                self.recent.popleft()
            if len(self.recent) >= self.per_minute:
                return Answer(429, {"success": False, "status": 429, "message": "Rate limit"})
            self.recent.append(now)
        return None

    def _create(self, props: dict[str, Any]) -> Answer:
        if not props.get("name"):
            return Answer(422, {"success": False, "status": 422, "message": "Name is required"})
        lead_id, self.next_id = self.next_id, self.next_id + 1
        self.leads[lead_id] = {"status": "New", **props, "id": lead_id}
        return Answer(200, self.leads[lead_id])

    def _update(self, lead_id: int, props: dict[str, Any]) -> Answer:
        self.leads[lead_id].update({k: v for k, v in props.items() if k != "id"})
        return Answer(200, self.leads[lead_id])

    def _upsert(self, body: dict[str, Any]) -> Answer:
        props, match = body.get("properties") or {}, body.get("match") or {}
        if match.get("field_name") != "email":
            return Answer(422, {"message": "unsupported match"})
        found = [
            i
            for i, lead in self.leads.items()
            if (lead.get("email") or {}).get("email", "").lower()
            == str(match.get("field_value")).lower()
        ]
        if len(found) > 1:
            return Answer(422, {"message": "multiple matches", "ids": found})
        return self._update(found[0], props) if found else self._create(props)

    def handle(self, request: Seen) -> Answer:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        prefix = "/developer_api/v1/leads"
        path, body = request.path, request.json
        if request.method == "POST" and path == prefix:
            return self._create(body)
        if request.method == "PUT" and path == f"{prefix}/upsert":
            return self._upsert(body)
        if request.method == "PUT" and path.startswith(prefix + "/"):
            tail = path.removeprefix(prefix + "/")
            if not tail.isdigit() or int(tail) not in self.leads:
                return Answer(
                    404, {"success": False, "status": 404, "message": "Resource not found"}
                )
            return self._update(int(tail), body)
        return Answer(404, {"message": "no route"})
