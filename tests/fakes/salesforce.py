"""A fake Salesforce org (login and REST API v60.0) enforcing what Salesforce documents.

One server plays both the login host and the org's instance (``instance_url`` is
this server unless given). What it enforces, and where Salesforce says so:

* ``POST /services/oauth2/token`` — help.salesforce.com "OAuth 2.0 Client Credentials
  Flow for Server-to-Server Integration" and "OAuth Endpoints": an
  ``application/x-www-form-urlencoded`` body with ``grant_type=client_credentials``,
  ``client_id`` and ``client_secret``; the answer holds ``access_token``,
  ``instance_url``, ``id``, ``token_type``, ``issued_at``, ``signature``. Wrong
  credentials: 400 ``{"error": "invalid_client", "error_description": ...}``; another
  grant type: 400 ``unsupported_grant_type``; another content type: 400
  ``invalid_request``.
* every data call needs ``Authorization: Bearer <a live token>``, else 401
  ``[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``
  — REST API "Status Codes and Error Responses" (401: session ID or OAuth token
  expired or invalid); :meth:`expire_tokens` ends every token issued so far,
  ``dead_tokens`` issues tokens that are refused at once.
* ``POST /services/data/v60.0/sobjects/Lead/`` — REST API "Create a Record": 201
  ``{"id", "errors": [], "success": true}``; ``LastName`` and ``Company`` are
  required (Lead object reference) -> 400 ``REQUIRED_FIELD_MISSING`` with
  ``fields``; a field the Lead has not -> 400 ``INVALID_FIELD``; longer than the
  field reference allows (``Description`` 32,000, ``Company`` 255, ``LastName`` 80,
  ``FirstName`` 40, ``Email`` 80, ``Phone`` 40) -> 400 ``STRING_TOO_LONG``; an email
  with a non-ASCII local part -> 400 ``INVALID_EMAIL_ADDRESS``; JSON only.
* ``PATCH .../sobjects/Lead/{id}`` — REST API "Update a Record": 204 and no body;
  an unknown or deleted id -> 404 ``NOT_FOUND``; a converted lead -> 400
  ``CANNOT_UPDATE_CONVERTED_LEAD``.
* ``GET .../query?q=`` — REST API "Query" / "Execute a SOQL Query": ``{"totalSize",
  "done", "records": [{"attributes", "Id"}]}``. Only the one query the format sends
  is understood (else 400 ``MALFORMED_QUERY``, as Salesforce answers an invalid
  query); its literal is unescaped by SOQL's rules — "Quoted String Escape Sequences"
  and "Reserved Characters" (``\\'`` and ``\\\\`` must be escaped; ``\\n \\r \\t \\b \\f
  \\"`` are the other escapes; any other backslash is an error) — and compared with
  each open lead's email ignoring case, as SOQL's ``=`` does.
* :meth:`fail_with`: the next calls answer as given, e.g. 403
  ``REQUEST_LIMIT_EXCEEDED`` (REST API status codes: 403, request refused; "API
  Request Limits and Allocations": the limit's exception code) or a 503.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qs

from . import Answer, FakeServer, Seen

__all__ = ["FakeSalesforce"]

API = "/services/data/v60.0"
LENGTHS = {
    "FirstName": 40,
    "LastName": 80,
    "Company": 255,
    "Email": 80,
    "Phone": 40,
    "LeadSource": 255,
    "Status": 255,
    "Description": 32_000,
}
REQUIRED = ("LastName", "Company")
QUERY = re.compile(
    r"SELECT Id FROM Lead WHERE Email = '((?:[^'\\]|\\.)*)' AND IsConverted = false LIMIT 1"
)
UNESCAPE = {"n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t"}
UNESCAPE |= {"b": "\b", "B": "\b", "f": "\f", "F": "\f", '"': '"', "'": "'", "\\": "\\"}


def _error(status: int, code: str, message: str, fields: list[str] | None = None) -> Answer:
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return Answer(status, [item])


def soql_unquote(literal: str) -> str | None:
    """The value of a SOQL string literal's inside; ``None``: a bad escape."""
    out, chars = [], iter(literal)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, "")
        if escaped not in UNESCAPE:
            return None
        out.append(UNESCAPE[escaped])
    return "".join(out)


class FakeSalesforce(FakeServer):
    def __init__(self, client_id: str, client_secret: str, instance_url: str | None = None):
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self._instance_url = instance_url
        self.tokens: set[str] = set()
        self.issued: list[str] = []
        self.dead_tokens = False
        self.leads: dict[str, dict[str, Any]] = {}
        self.next_id = 1
        self.failures: list[Answer] = []

    @property
    def instance_url(self) -> str:
        return self._instance_url or self.url

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def fail_with(self, answer: Answer, times: int = 1) -> None:
        with self.lock:
            self.failures = [answer] * times

    def add(self, **fields: Any) -> str:
        with self.lock:
            return self._insert(fields)

    def delete(self, lead_id: str) -> None:
        with self.lock:
            del self.leads[lead_id]

    def convert(self, lead_id: str) -> None:
        with self.lock:
            self.leads[lead_id]["IsConverted"] = True

    def data_calls(self) -> list[Seen]:
        return [r for r in self.requests() if r.path.startswith(API)]

    # -- decisions --------------------------------------------------------------

    def _insert(self, fields: dict[str, Any]) -> str:
        lead_id, self.next_id = f"00Q8d{self.next_id:013d}", self.next_id + 1
        self.leads[lead_id] = {"Status": "Open - Not Contacted", **fields, "IsConverted": False}
        return lead_id

    def _token(self, request: Seen) -> Answer:
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return Answer(400, {"error": "invalid_request", "error_description": "bad body"})
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return Answer(400, {"error": "unsupported_grant_type", "error_description": "grant"})
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return Answer(
                400, {"error": "invalid_client", "error_description": "invalid client credentials"}
            )
        token = "00Dfake!" + secrets.token_urlsafe(24)
        self.issued.append(token)
        if not self.dead_tokens:
            self.tokens.add(token)
        return Answer(
            200,
            {
                "access_token": token,
                "signature": "c2lnbmF0dXJl",
                "scope": "api",
                "instance_url": self.instance_url,
                "id": f"{self.url}/id/00Dfake/005fake",
                "token_type": "Bearer",
                "issued_at": "1764770000000",
            },
        )

    def _invalid(self, body: Any, *, create: bool) -> Answer | None:
        if not isinstance(body, dict):
            return _error(400, "JSON_PARSER_ERROR", "Unexpected body")
        for name, value in body.items():
            if name not in LENGTHS:
                return _error(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Lead"
                )
            if isinstance(value, str) and len(value) > LENGTHS[name]:
                message = f"{name}: data value too large (max length={LENGTHS[name]})"
                return _error(400, "STRING_TOO_LONG", message, [name])
        email = body.get("Email")
        if isinstance(email, str) and not email.split("@")[0].isascii():
            # Salesforce's email fields take ASCII local parts only
            message = f"Email: invalid email address: {email}"
            return _error(400, "INVALID_EMAIL_ADDRESS", message, ["Email"])
        missing = [n for n in REQUIRED if (create or n in body) and not body.get(n)]
        if missing:
            message = f"Required fields are missing: [{', '.join(missing)}]"
            return _error(400, "REQUIRED_FIELD_MISSING", message, missing)
        return None

    def _query(self, request: Seen) -> Answer:
        match = QUERY.fullmatch(request.query.get("q", ""))
        value = soql_unquote(match.group(1)) if match else None
        if value is None:
            return _error(400, "MALFORMED_QUERY", "unexpected token")
        found = [
            i
            for i, lead in self.leads.items()
            if not lead["IsConverted"] and str(lead.get("Email", "")).lower() == value.lower()
        ][:1]
        records = [
            {"attributes": {"type": "Lead", "url": f"{API}/sobjects/Lead/{i}"}, "Id": i}
            for i in found
        ]
        return Answer(200, {"totalSize": len(records), "done": True, "records": records})

    def handle(self, request: Seen) -> Answer:
        if request.method == "POST" and request.path == "/services/oauth2/token":
            return self._token(request)
        if not request.path.startswith(API + "/"):
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or bearer.removeprefix("Bearer ") not in self.tokens:
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self.failures:
            return self.failures.pop(0)
        path = request.path.removeprefix(API)
        if request.method == "GET" and path in ("/query", "/query/"):
            return self._query(request)
        if request.method in ("POST", "PATCH") and not request.headers.get(
            "content-type", ""
        ).startswith("application/json"):
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be JSON")
        if request.method == "POST" and path in ("/sobjects/Lead", "/sobjects/Lead/"):
            body = request.json
            invalid = self._invalid(body, create=True)
            if invalid is not None:
                return invalid
            return Answer(201, {"id": self._insert(body), "errors": [], "success": True})
        if request.method == "PATCH" and path.startswith("/sobjects/Lead/"):
            lead_id = path.removeprefix("/sobjects/Lead/")
            if lead_id not in self.leads:
                return _error(404, "NOT_FOUND", "The requested resource does not exist")
            if self.leads[lead_id]["IsConverted"]:
                return _error(
                    400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"
                )
            invalid = self._invalid(request.json, create=False)
            if invalid is not None:
                return invalid
            self.leads[lead_id].update(request.json)
            return Answer(204)
        return _error(404, "NOT_FOUND", "The requested resource does not exist")
