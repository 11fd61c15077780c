"""A fake Pipedrive API that enforces what Pipedrive's documentation requires.

Sources, and what each says:

* Authentication (pipedrive.readme.io/docs/core-api-concepts-authentication): an
  api_token integration sends the token in the ``x-api-token`` header on every
  request. A missing or wrong token -> 401 ``{"success": false, "error":
  "unauthorized access", "errorCode": 401}``. A token in the query string
  (``api_token=``, the legacy way) is refused the same way and recorded in
  :attr:`FakePipedrive.query_tokens`, so tests can assert it never happens.
* Responses (pipedrive.readme.io/docs/core-api-concepts-responses): every answer
  is JSON with ``success``; data in ``data``; errors carry ``error``.
* Leads (developers.pipedrive.com changelog "Introducing Leads API", API v1
  Leads reference): POST/PATCH must be ``application/json`` (else 400); a lead
  needs a ``title`` and a ``person_id`` or ``organization_id`` (the reference
  allows both; 400 otherwise, or for a person that does not exist); ids are
  UUIDs; ``GET /api/v1/leads`` filters by ``person_id`` and ``archived_status``
  (``archived`` | ``not_archived`` | ``all``, the default), oldest first, and
  answers ``data: null`` when nothing matches; ``PATCH`` of an unknown lead -> 404.
* Persons, API v2 (Persons reference, ``searchPersons``/``addPerson``):
  ``GET /api/v2/persons/search`` needs ``term`` (at least 2 characters, 1 with
  ``exact_match``); ``fields=email`` matches e-mail addresses only; ``exact_match``
  is a full, case-insensitive match. The answer is ``{"success": true, "data":
  {"items": [{"result_score", "item": {"id", "type": "person", "name", "phones",
  "emails", ...}}]}, "additional_data": {"next_cursor"}}`` where the item's
  ``emails`` and ``phones`` are plain strings (PersonSearchItemItem in the official
  clients). ``POST /api/v2/persons`` requires ``name`` (400 without); ``emails``
  and ``phones`` are arrays of ``{"value", "primary", "label"}`` objects.
* Notes (Notes reference, ``addNote``): ``content`` is required, and one of
  ``lead_id``/``deal_id``/``person_id``/``org_id`` (400 otherwise; an unknown
  lead too).
* Rate limiting (pipedrive.readme.io/docs/core-api-concepts-rate-limiting): limits
  per token per 2-second window; every answer carries ``x-ratelimit-limit``,
  ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (seconds until the window
  resets); beyond it 429. ``per_window`` enforces such a limit;
  ``fail_with_429(n, reset=, retry_after=)`` answers the next ``n`` calls with 429.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from typing import Any

from . import Answer, FakeServer, Seen

__all__ = ["FakePipedrive"]

WINDOW = 2.0


def _error(status: int, message: str, **extra: Any) -> Answer:
    body = {"success": False, "error": message, "errorCode": status, "data": None, **extra}
    return Answer(status, body)


class FakePipedrive(FakeServer):
    def __init__(self, token: str, per_window: int | None = None) -> None:
        super().__init__()
        self.token, self.per_window = token, per_window
        self.persons: dict[int, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        self.query_tokens: list[str] = []
        self.next_person = 101
        self.pending_429: list[dict[str, str]] = []
        self.note_failures: list[int] = []
        self.recent: deque[float] = deque()

    @property
    def base(self) -> str:
        """The API base, as configured in the destination's ``url``."""
        return self.url

    # -- arranging --------------------------------------------------------------

    def add_person(self, name: str, email: str | None = None) -> int:
        with self.lock:
            emails = [{"value": email, "primary": True, "label": "work"}] if email else []
            return self._new_person({"name": name, "emails": emails})["id"]

    def add_lead(self, person_id: int, title: str, *, archived: bool = False) -> str:
        with self.lock:
            lead = self._new_lead({"title": title, "person_id": person_id})
            lead["is_archived"] = archived
            return str(lead["id"])

    def delete_lead(self, lead_id: str) -> None:
        with self.lock:
            del self.leads[lead_id]

    def fail_with_429(
        self, times: int, *, reset: int | None = None, retry_after: int | None = None
    ) -> None:
        headers = {}
        if reset is not None:
            headers["x-ratelimit-reset"] = str(reset)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        with self.lock:
            self.pending_429 = [headers] * times

    def fail_notes(self, times: int, status: int = 503) -> None:
        with self.lock:
            self.note_failures = [status] * times

    def notes_of(self, lead_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [n for n in self.notes if n.get("lead_id") == lead_id]

    # -- records ----------------------------------------------------------------

    def _new_person(self, body: dict[str, Any]) -> dict[str, Any]:
        person_id, self.next_person = self.next_person, self.next_person + 1
        person = {
            "id": person_id,
            "name": body["name"],
            "emails": body.get("emails") or [],
            "phones": body.get("phones") or [],
            "org_id": body.get("org_id"),
        }
        self.persons[person_id] = person
        return person

    def _new_lead(self, body: dict[str, Any]) -> dict[str, Any]:
        lead_id = str(uuid.uuid4())
        lead = {
            "id": lead_id,
            "title": body["title"],
            "person_id": body.get("person_id"),
            "organization_id": body.get("organization_id"),
            "is_archived": False,
            "source_name": "API",
            "was_seen": False,
        }
        self.leads[lead_id] = lead
        return lead

    # -- decisions --------------------------------------------------------------

    def _refuse(self, request: Seen) -> Answer | None:
        if "api_token" in request.query:
            self.query_tokens.append(request.query["api_token"])
        if request.headers.get("x-api-token") != self.token or "api_token" in request.query:
            return _error(401, "unauthorized access")
        if self.pending_429:
            headers = self.pending_429.pop(0)
            answer = _error(429, "Too many requests")
            answer.headers.update(headers)
            return answer
        if self.per_window is not None:
            now = time.monotonic()
            while self.recent and self.recent[0] <= now - WINDOW:
                self.recent.popleft()
            if len(self.recent) >= self.per_window:
                reset = max(1, round(self.recent[0] + WINDOW - now))
                answer = _error(429, "Too many requests")
                answer.headers.update(self._rate_headers(0, reset))
                return answer
            self.recent.append(now)
        if request.method in ("POST", "PATCH", "PUT"):
            if not request.headers.get("content-type", "").startswith("application/json"):
                return _error(400, "Content-Type must be application/json")
            if not isinstance(request.json, dict):
                return _error(400, "Request body must be a JSON object")
        return None

    def _rate_headers(self, remaining: int, reset: int = 2) -> dict[str, str]:
        limit = self.per_window if self.per_window is not None else 20
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
        }

    def _search_persons(self, query: dict[str, str]) -> Answer:
        term, exact = query.get("term", ""), query.get("exact_match") == "true"
        if len(term) < (1 if exact else 2):
            return _error(400, "Search term must be at least 2 characters long")
        fields = set((query.get("fields") or "name,email,phone,notes").split(","))
        items = []
        for person in self.persons.values():
            emails = [e["value"] for e in person["emails"]]
            values = (emails if "email" in fields else []) + (
                [person["name"]] if "name" in fields else []
            )
            hit = any(
                v.lower() == term.lower() if exact else term.lower() in v.lower() for v in values
            )
            if hit:
                item = {
                    "id": person["id"],
                    "type": "person",
                    "name": person["name"],
                    "phones": [p["value"] for p in person["phones"]],
                    "emails": emails,
                    "visible_to": 3,
                    "owner": {"id": 1},
                    "organization": None,
                    "custom_fields": [],
                    "notes": [],
                }
                items.append({"result_score": 1.0, "item": item})
        return Answer(
            200,
            {"success": True, "data": {"items": items}, "additional_data": {"next_cursor": None}},
        )

    def _add_person(self, body: dict[str, Any]) -> Answer:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            return _error(400, "Name is required")
        for key in ("emails", "phones"):
            entries = body.get(key, [])
            if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("value"), str) for e in entries
            ):
                return _error(400, f"{key} must be an array of objects with a value")
        return Answer(201, {"success": True, "data": self._new_person(body)})

    def _list_leads(self, query: dict[str, str]) -> Answer:
        status = query.get("archived_status", "all")
        if status not in ("archived", "not_archived", "all"):
            return _error(400, "archived_status must be archived, not_archived or all")
        found = [
            lead
            for lead in self.leads.values()
            if ("person_id" not in query or str(lead["person_id"]) == query["person_id"])
            and (status == "all" or lead["is_archived"] == (status == "archived"))
        ]
        pagination = {"start": 0, "limit": 100, "more_items_in_collection": False}
        return Answer(
            200,
            {"success": True, "data": found or None, "additional_data": {"pagination": pagination}},
        )

    def _linked(self, body: dict[str, Any]) -> Answer | None:
        person = body.get("person_id")
        if person is not None and (not isinstance(person, int) or person not in self.persons):
            return _error(400, "Person not found")
        return None

    def _add_lead(self, body: dict[str, Any]) -> Answer:
        if not isinstance(body.get("title"), str) or not body["title"].strip():
            return _error(400, "Title is required")
        if body.get("person_id") is None and body.get("organization_id") is None:
            return _error(400, "Lead has to be linked to a person or an organization")
        refused = self._linked(body)
        return refused or Answer(201, {"success": True, "data": self._new_lead(body)})

    def _update_lead(self, lead_id: str, body: dict[str, Any]) -> Answer:
        if lead_id not in self.leads:
            return _error(404, "Lead not found")
        if "title" in body and not body["title"]:
            return _error(400, "Title cannot be empty")
        refused = self._linked(body)
        if refused is not None:
            return refused
        lead = self.leads[lead_id]
        lead.update({k: v for k, v in body.items() if k != "id"})
        return Answer(200, {"success": True, "data": lead})

    def _add_note(self, body: dict[str, Any]) -> Answer:
        if self.note_failures:
            return _error(self.note_failures.pop(0), "Service unavailable")
        if not isinstance(body.get("content"), str) or not body["content"]:
            return _error(400, "Content is required")
        if not any(body.get(k) for k in ("lead_id", "deal_id", "person_id", "org_id")):
            return _error(400, "One of lead_id, deal_id, person_id or org_id is required")
        if body.get("lead_id") and body["lead_id"] not in self.leads:
            return _error(400, "Lead not found")
        note = {"id": len(self.notes) + 1, **body}
        self.notes.append(note)
        return Answer(201, {"success": True, "data": note})

    def _route(self, request: Seen) -> Answer:
        method, path, body, query = request.method, request.path, request.json, request.query
        if (method, path) == ("GET", "/api/v2/persons/search"):
            return self._search_persons(query)
        if (method, path) == ("POST", "/api/v2/persons"):
            return self._add_person(body)
        if (method, path) == ("GET", "/api/v1/leads"):
            return self._list_leads(query)
        if (method, path) == ("POST", "/api/v1/leads"):
            return self._add_lead(body)
        if method == "PATCH" and path.startswith("/api/v1/leads/"):
            return self._update_lead(path.removeprefix("/api/v1/leads/"), body)
        if (method, path) == ("POST", "/api/v1/notes"):
            return self._add_note(body)
        return _error(404, "Unknown method")

    def handle(self, request: Seen) -> Answer:
        answer = self._refuse(request) or self._route(request)
        if answer.status != 429:
            remaining = self.per_window - len(self.recent) if self.per_window else 19
            answer.headers.update(self._rate_headers(remaining))
        return answer
