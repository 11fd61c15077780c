"""A fake HubSpot CRM v3 API that enforces what HubSpot's documentation requires.

Sources (developers.hubspot.com unless named):

* private apps (``/docs/api/private-apps``) and the common error bodies: every call
  needs ``Authorization: Bearer <token>``; without it, or with another token, 401
  ``{"status": "error", "category": "INVALID_AUTHENTICATION", ...}``. Bodies are JSON
  (the method pages list ``Content Type: application/json``): anything else is 415.
* contacts guide (``/docs/api/crm/contacts``) and "Update a contact"
  (``.../crm/objects/contacts/update-contact``): ``POST /crm/v3/objects/contacts`` and
  ``PATCH /crm/v3/objects/contacts/{id}`` take ``{"properties": {...}}``; email is the
  unique key; "read-only and non-existent properties will result in an error" (400),
  an empty string clears a property; ``lifecyclestage`` takes internal names; an
  unknown id is 404 ``OBJECT_NOT_FOUND``. A create (or an email change) onto an email
  another contact has is 409 ``{"status": "error", "message": "Contact already exists.
  Existing ID: N", "category": "CONFLICT"}`` (community thread "Updated 409 Conflict
  responses" quotes that message; newer answers say ``OBJECT_ALREADY_EXISTS``).
* CRM search (``/docs/api/crm/search``): ``POST /crm/v3/objects/contacts/search`` with
  ``filterGroups[].filters[] {propertyName, operator, value}`` and ``limit`` (1..200)
  answers ``{"total", "results": [{"id", "properties", ...}]}``. Search is eventually
  consistent (Okta's HubSpot connector: "may exclude newly created ... objects"):
  with ``lagging`` set, new contacts stay out of search until :meth:`catch_up`. The
  search changelog allows 4 searches a second per token (``searches_per_second``).
* notes guide (``/docs/api/crm/notes``): ``POST /crm/v3/objects/notes``;
  ``hs_timestamp`` is required (epoch milliseconds or ISO 8601 UTC), ``hs_note_body``
  at most 65,536 characters; each association is ``{"to": {"id"}, "types":
  [{"associationCategory", "associationTypeId"}]}``; 202 is note to contact, and
  the contact must exist.
* usage guidelines (``/docs/api/usage-details``): 100 requests per 10 seconds per
  private app; beyond, 429 ``{"status": "error", "errorType": "RATE_LIMIT",
  "policyName": "TEN_SECONDLY_ROLLING", ...}``, here with ``Retry-After``.
  ``fail_with_429(n)`` and ``fail_notes(n)`` inject failures.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from datetime import datetime
from typing import Any

from . import Answer, FakeServer, Seen

__all__ = ["FakeHubSpot"]

WRITABLE = {"email", "firstname", "lastname", "phone", "company", "lifecyclestage"}
WRITABLE |= {"hs_lead_status", "website", "jobtitle", "city", "country", "message"}
READ_ONLY = {"hs_object_id", "createdate", "lastmodifieddate", "hs_analytics_source"}
READ_ONLY |= {"hs_analytics_source_data_1", "hs_analytics_source_data_2"}
READ_ONLY |= {"hs_analytics_first_url", "hs_analytics_first_referrer"}
LIFECYCLE = {"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead"}
LIFECYCLE |= {"opportunity", "customer", "evangelist", "other"}
LEAD_STATUS = {"NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED"}
LEAD_STATUS |= {"ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"}
OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "HAS_PROPERTY", "CONTAINS_TOKEN"}
CATEGORIES = {"HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED"}
NOTE_TO_CONTACT = 202
PREFIX = "/crm/v3/objects"


def error(status: int, category: str, message: str, **extra: Any) -> Answer:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    return Answer(status, {**body, "category": category, **extra})


def _valid_timestamp(value: Any) -> bool:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return True
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment.utcoffset() is not None


class FakeHubSpot(FakeServer):
    def __init__(
        self, token: str, per_ten_seconds: int = 100, searches_per_second: int | None = None
    ) -> None:
        super().__init__()
        self.token, self.per_ten_seconds = token, per_ten_seconds
        self.searches_per_second = searches_per_second
        self.contacts: dict[str, dict[str, str]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.unindexed: set[str] = set()
        self.lagging = False
        self.next_id = 101
        self.pending_429: list[str] = []
        self.pending_note_failures: list[int] = []
        self.recent: deque[float] = deque()
        self.recent_searches: deque[float] = deque()

    # -- test controls ------------------------------------------------------------

    def fail_with_429(self, times: int, retry_after: str = "7") -> None:
        with self.lock:
            self.pending_429 = [retry_after] * times

    def fail_notes(self, times: int, status: int = 500) -> None:
        with self.lock:
            self.pending_note_failures = [status] * times

    def add_contact(self, props: dict[str, str], *, searchable: bool = True) -> str:
        """A contact made in HubSpot (by a person, or another worker a moment ago)."""
        with self.lock:
            contact_id = self._store(props)
            if not searchable:
                self.unindexed.add(contact_id)
            return contact_id

    def delete(self, contact_id: str) -> None:
        with self.lock:
            del self.contacts[contact_id]

    def catch_up(self) -> None:
        """The search index catches up with every contact."""
        with self.lock:
            self.unindexed.clear()

    def notes_of(self, contact_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [n for n in self.notes.values() if contact_id in n["contacts"]]

    # -- decisions --------------------------------------------------------------

    def _over_limit(self, window: deque[float], limit: int, seconds: float) -> float | None:
        now = time.monotonic()
        while window and window[0] <= now - seconds:
            window.popleft()
        if len(window) >= limit:
            return window[0] + seconds - now
        window.append(now)
        return None

    def _refuse(self, request: Seen) -> Answer | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        if request.method in ("POST", "PATCH") and not request.headers.get(
            "content-type", ""
        ).startswith("application/json"):
            return error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
        if self.pending_429:
            return self._rate_limited(self.pending_429.pop(0))
        wait = self._over_limit(self.recent, self.per_ten_seconds, 10.0)
        if wait is not None:
            return self._rate_limited(str(max(1, math.ceil(wait))))
        return None

    def _rate_limited(self, retry_after: str, policy: str = "TEN_SECONDLY_ROLLING") -> Answer:
        body = {
            "status": "error",
            "message": f"You have reached your {policy.lower()} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy,
        }
        return Answer(429, body, {"Retry-After": retry_after})

    def _check_properties(self, props: Any) -> Answer | None:
        if not isinstance(props, dict):
            return error(400, "VALIDATION_ERROR", "Invalid input JSON: expected properties")
        for name, value in props.items():
            if name in READ_ONLY:
                return error(400, "READ_ONLY_VALUE", f'Property "{name}" is read-only')
            if name not in WRITABLE:
                return error(400, "VALIDATION_ERROR", f'Property "{name}" does not exist')
            if not isinstance(value, str | int | float | bool):
                return error(400, "VALIDATION_ERROR", f'Property "{name}" has an invalid value')
        if props.get("lifecyclestage") not in (None, "", *LIFECYCLE):
            return error(400, "VALIDATION_ERROR", "lifecyclestage: INVALID_OPTION")
        if props.get("hs_lead_status") not in (None, "", *LEAD_STATUS):
            return error(400, "VALIDATION_ERROR", "hs_lead_status: INVALID_OPTION")
        return None

    def _email_owner(self, email: Any) -> str | None:
        if not isinstance(email, str) or not email:
            return None
        for contact_id, contact in self.contacts.items():
            if contact.get("email", "").lower() == email.lower():
                return contact_id
        return None

    def _conflict(self, existing: str) -> Answer:
        message = f"Contact already exists. Existing ID: {existing}"
        return error(409, "CONFLICT", message)

    def _store(self, props: dict[str, Any]) -> str:
        contact_id, self.next_id = str(self.next_id), self.next_id + 1
        values = {k: str(v) for k, v in props.items() if v != ""}
        self.contacts[contact_id] = {**values, "hs_object_id": contact_id}
        if self.lagging:
            self.unindexed.add(contact_id)
        return contact_id

    def _object(self, contact_id: str, status: int = 200) -> Answer:
        props = self.contacts[contact_id]
        stamp = "2026-11-23T14:05:00.000Z"
        body = {"id": contact_id, "properties": dict(props), "createdAt": stamp}
        return Answer(status, {**body, "updatedAt": stamp, "archived": False})

    def _create(self, body: Any) -> Answer:
        props = body.get("properties") if isinstance(body, dict) else None
        refused = self._check_properties(props)
        if refused is not None:
            return refused
        assert isinstance(props, dict)
        existing = self._email_owner(props.get("email"))
        if existing is not None:
            return self._conflict(existing)
        return self._object(self._store(props), 201)

    def _update(self, contact_id: str, body: Any) -> Answer:
        if contact_id not in self.contacts:
            return error(404, "OBJECT_NOT_FOUND", "resource not found")
        props = body.get("properties") if isinstance(body, dict) else None
        refused = self._check_properties(props)
        if refused is not None:
            return refused
        assert isinstance(props, dict)
        owner = self._email_owner(props.get("email"))
        if owner is not None and owner != contact_id:
            return self._conflict(owner)
        contact = self.contacts[contact_id]
        for name, value in props.items():
            if value == "":
                contact.pop(name, None)
            else:
                contact[name] = str(value)
        return self._object(contact_id)

    def _search(self, body: Any) -> Answer:
        if self.searches_per_second is not None:
            wait = self._over_limit(self.recent_searches, self.searches_per_second, 1.0)
            if wait is not None:
                return self._rate_limited("1", "SECONDLY")
        groups = body.get("filterGroups") if isinstance(body, dict) else None
        limit = body.get("limit", 10) if isinstance(body, dict) else None
        if not isinstance(groups, list) or not isinstance(limit, int) or not 1 <= limit <= 200:
            return error(400, "VALIDATION_ERROR", "Invalid search request")
        wanted: list[str] = []
        for group in groups:
            filters = group.get("filters") if isinstance(group, dict) else None
            if not isinstance(filters, list) or not filters:
                return error(400, "VALIDATION_ERROR", "filterGroups[].filters is required")
            for item in filters:
                if not isinstance(item, dict) or item.get("operator") not in OPERATORS:
                    return error(400, "VALIDATION_ERROR", "invalid filter")
                if (item.get("propertyName"), item.get("operator")) != ("email", "EQ"):
                    return error(400, "VALIDATION_ERROR", "fake: only email EQ is searchable")
                wanted.append(str(item.get("value", "")).lower())
        found = [
            contact_id
            for contact_id, contact in self.contacts.items()
            if contact_id not in self.unindexed and contact.get("email", "").lower() in wanted
        ]
        results = [self._object(contact_id).body for contact_id in found[:limit]]
        return Answer(200, {"total": len(found), "results": results})

    def _note(self, body: Any) -> Answer:
        if self.pending_note_failures:
            return error(self.pending_note_failures.pop(0), "INTERNAL_ERROR", "internal error")
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict) or "hs_timestamp" not in props:
            return error(400, "VALIDATION_ERROR", "hs_timestamp is required")
        if not _valid_timestamp(props["hs_timestamp"]):
            return error(400, "VALIDATION_ERROR", "hs_timestamp: invalid date")
        if len(str(props.get("hs_note_body", ""))) > 65_536:
            return error(400, "VALIDATION_ERROR", "hs_note_body is too long")
        contacts: list[str] = []
        for association in body.get("associations") or []:
            to = association.get("to") if isinstance(association, dict) else None
            types = association.get("types") if isinstance(association, dict) else None
            if not isinstance(to, dict) or "id" not in to or not isinstance(types, list):
                return error(400, "VALIDATION_ERROR", "association needs to.id and types")
            for kind in types:
                if not isinstance(kind, dict) or kind.get("associationCategory") not in CATEGORIES:
                    return error(400, "VALIDATION_ERROR", "invalid associationCategory")
                if kind.get("associationTypeId") != NOTE_TO_CONTACT:
                    return error(400, "VALIDATION_ERROR", "unknown associationTypeId")
            if str(to["id"]) not in self.contacts:
                return error(400, "VALIDATION_ERROR", f"contact {to['id']} not found")
            contacts.append(str(to["id"]))
        note_id = str(self.next_id)
        self.next_id += 1
        self.notes[note_id] = {"id": note_id, "properties": props, "contacts": contacts}
        return Answer(201, {"id": note_id, "properties": props, "archived": False})

    def handle(self, request: Seen) -> Answer:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        method, path = request.method, request.path
        contacts = f"{PREFIX}/contacts"
        try:
            body = request.json
        except ValueError:
            return error(400, "VALIDATION_ERROR", "Invalid input JSON")
        if method == "POST" and path == contacts:
            return self._create(body)
        if method == "POST" and path == f"{contacts}/search":
            return self._search(body)
        if method == "PATCH" and path.startswith(contacts + "/"):
            return self._update(path.removeprefix(contacts + "/"), body)
        if method == "POST" and path == f"{PREFIX}/notes":
            return self._note(body)
        return error(404, "OBJECT_NOT_FOUND", "no route")
