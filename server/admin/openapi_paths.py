"""Paths, parameters and answers of the admin HTTP API in the OpenAPI document.

Written out by hand (response schemas are generated, see :mod:`.openapi`); each
path lists every status it can answer.
"""

from __future__ import annotations

from typing import Any

from ..hooks import MAX_HOOKS
from ..sites import EVENT_TYPES
from .inbox import MAX_QUERY
from .params import MAX_DAYS, MAX_LIMIT

__all__ = ["PATHS"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


_GUARDED = {
    "401": _error("missing or wrong admin token"),
    "403": _error("refused: not a loopback client (no admin token set) or failed CSRF check"),
    "429": _error("too many wrong tokens from this address; wait `Retry-After` seconds"),
    "503": _error("Redis is unavailable"),
}


def _json_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A required JSON object body with exactly these properties."""
    schema = {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": properties,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _created(model: str, description: str, conflict: str) -> dict[str, Any]:
    """The answers of a ``POST`` that makes something from a JSON body naming a site."""
    return {
        "201": _ok(model, description),
        "400": _error("the body is invalid (the key named in `param`)"),
        "404": _error("unknown site"),
        "409": _error(conflict),
        "413": _error("the body is too large"),
        **_GUARDED,
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_TIME = {"type": "string", "examples": ["7d", "24h", "2024-05-01", "2024-05-01T09:30:00Z"]}
_CURSOR = _query(
    "cursor", "`next_cursor` of the previous page; omit for the first page", {"type": "string"}
)


def _limit(default: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default}
    return _query("limit", "page size", schema)


_SESSION_ID = _path("session_id", "24 lowercase hex digits")
_SITE = _query("site", "a site id; default all sites", {"type": "string"})
_SINCE = _query("since", "ISO-8601 date/time or relative (`7d`); default 30 days", _TIME)
_UNTIL = _query("until", "ISO-8601 date/time or relative; default now", _TIME)
_EVENT_ID = _path("event_id", "`evt_<session id>_completed|abandoned_<n>|test`")

PATHS: dict[str, Any] = {
    "/api/reports/abandoned": {
        "get": {
            "operationId": "abandonedReport",
            "summary": "Abandoned leads, with totals and drop-off by flow step",
            "description": (
                "One row per abandoned session, newest first, with captured fields, last "
                "step, contactable/recovered flags, the delivery state of its "
                "`lead.abandoned` event and the visitor's `resume_url` (until it expires; "
                "none once completed). The summary counts whole UTC days from the per-day "
                f"counters. Ranges may span at most {MAX_DAYS} days. `format=csv` streams "
                "every row of the period as RFC 4180 CSV (UTF-8 with BOM, formula-safe)."
            ),
            "parameters": [
                _SITE,
                _SINCE,
                _UNTIL,
                _query("format", "answer format", {"type": "string", "enum": ["json", "csv"]}),
                _CURSOR,
                _limit(100),
            ],
            "responses": {
                "200": {
                    "description": "the report page (JSON) or every row (CSV)",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/AbandonedReport"}
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "400": _error("a parameter is invalid (named in `param`)"),
                "404": _error("unknown site"),
                **_GUARDED,
            },
        }
    },
    "/api/reports/summary": {
        "get": {
            "operationId": "summaryReport",
            "summary": "Totals, abandonment rate, drop-off by flow step and counts per day",
            "description": (
                "What the dashboard shows above its lead list: counted over the whole UTC "
                "days the period touches (`first_day` .. `last_day`), per site and overall."
            ),
            "parameters": [_SITE, _SINCE, _UNTIL],
            "responses": {
                "200": _ok("Summary", "the summary"),
                "400": _error("a parameter is invalid (named in `param`)"),
                "404": _error("unknown site"),
                **_GUARDED,
            },
        }
    },
    "/api/reports/recovery": {
        "get": {
            "operationId": "recoveryReport",
            "summary": "What became of abandoned chats: reminded, opened, recovered, completed",
            "description": (
                "Counts over the whole UTC days the period touches, each on the day it "
                "happened; `sessions` lists the newest recovered sessions of the period "
                "with what brought each back (`link`, `reminder:<n>`, `returned`), and "
                "`median_seconds_to_recover` covers all of them."
            ),
            "parameters": [_SITE, _SINCE, _UNTIL],
            "responses": {
                "200": _ok("RecoveryReport", "the report"),
                "400": _error("a parameter is invalid (named in `param`)"),
                "404": _error("unknown site"),
                **_GUARDED,
            },
        }
    },
    "/api/sessions": {
        "get": {
            "operationId": "listSessions",
            "summary": "Sessions of the period (open ones included), newest first",
            "description": (
                "All sessions and open ones are ordered by start, completed and abandoned "
                "ones by the moment they completed or were abandoned; `status` is the "
                "session's status now. A filtered page may hold fewer items; follow "
                "`next_cursor`."
            ),
            "parameters": [
                _SITE,
                _query(
                    "status",
                    "only sessions in this state now; default all",
                    {"type": "string", "enum": ["open", "completed", "abandoned"]},
                ),
                _SINCE,
                _UNTIL,
                _CURSOR,
                _limit(50),
            ],
            "responses": {
                "200": _ok("SessionPage", "a page of sessions"),
                "400": _error("a parameter is invalid (named in `param`)"),
                "404": _error("unknown site"),
                **_GUARDED,
            },
        }
    },
    "/api/sessions/{session_id}": {
        "parameters": [_SESSION_ID],
        "get": {
            "operationId": "getSession",
            "summary": "One session: transcript, fields, lead and delivery events",
            "responses": {
                "200": _ok("SessionDetail", "the session"),
                "404": _error("no such session (or not a session id)"),
                **_GUARDED,
            },
        },
        "delete": {
            "operationId": "eraseSession",
            "summary": "Erase the session's personal data everywhere (GDPR)",
            "description": (
                "Deletes transcript, fields and page data from the session keys, report "
                "indexes, attempt logs and inbox; dead-letters its pending events with the "
                "error `erased`; keeps anonymous counters; then rewrites the append-only file."
            ),
            "responses": {
                "200": {
                    "description": "what was erased",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Erase"}}
                    },
                },
                "404": _error("nothing stored for this session"),
                **_GUARDED,
            },
        },
    },
    "/api/deliveries": {
        "get": {
            "operationId": "listDeliveries",
            "summary": "The delivery log, newest first",
            "description": "A filtered page may hold fewer items; follow `next_cursor`.",
            "parameters": [
                _query(
                    "status",
                    "only events in this state; default all",
                    {"type": "string", "enum": ["pending", "delivered", "dead"]},
                ),
                _CURSOR,
                _limit(50),
            ],
            "responses": {
                "200": _ok("DeliveryPage", "a page of the log"),
                "400": _error("a parameter is invalid"),
                **_GUARDED,
            },
        }
    },
    "/api/deliveries/{event_id}": {
        "parameters": [_EVENT_ID],
        "get": {
            "operationId": "getDelivery",
            "summary": "One event and its attempts",
            "responses": {
                "200": _ok("DeliveryItem", "the event"),
                "404": _error("no such event"),
                **_GUARDED,
            },
        },
    },
    "/api/deliveries/{event_id}/replay": {
        "parameters": [_EVENT_ID],
        "post": {
            "operationId": "replayDelivery",
            "summary": "Deliver a delivered or dead event again (same id)",
            "responses": {
                "202": _ok("DeliveryItem", "queued; the event as it is now"),
                "404": _error("no such event"),
                "409": _error("the event is already waiting for delivery"),
                **_GUARDED,
            },
        },
    },
    "/api/destinations": {
        "get": {
            "operationId": "listDestinations",
            "summary": "Each destination's delivery health at a glance",
            "description": (
                "Every destination of every site (or of `site`), REST hooks included: the "
                "last delivered and failed attempt (ms since the epoch), the last error as "
                "the delivery log shows it, failed attempts in the last hour, events dead "
                "now, and `state`: `healthy` (no failures in the last hour, no dead "
                "letters), `failing` (failures in the last hour and none delivered since), "
                "`degraded` (failures or dead letters otherwise) or `idle` (no attempt)."
            ),
            "parameters": [_SITE],
            "responses": {
                "200": _ok("HealthList", "the destinations, in config order"),
                "404": _error("unknown site"),
                **_GUARDED,
            },
        }
    },
    "/api/sites/{site}/test-event": {
        "parameters": [_path("site", "a site id")],
        "post": {
            "operationId": "sendTestEvent",
            "summary": "Queue a signed sample lead (`lead.test`) to check the CRM side",
            "responses": {
                "202": _ok("DeliveryItem", "queued"),
                "404": _error("unknown site"),
                **_GUARDED,
            },
        },
    },
    "/api/inbox": {
        "get": {
            "operationId": "listInbox",
            "summary": "Leads in the built-in inbox, newest first, one per session",
            "description": (
                "Leads of sites without a webhook. Test events (`lead.test`) are apart: "
                "`kind=tests` lists them, `kind=all` mixes them in. `q` searches name, "
                "email, phone, company, site and what the visitor needs."
            ),
            "parameters": [
                _query(
                    "status",
                    "only new or only handled leads; default both",
                    {"type": "string", "enum": ["new", "handled"]},
                ),
                _query(
                    "kind",
                    "real leads, test events or both; default leads",
                    {"type": "string", "enum": ["leads", "tests", "all"]},
                ),
                _query("q", "search text", {"type": "string", "maxLength": MAX_QUERY}),
                _CURSOR,
                _limit(50),
            ],
            "responses": {
                "200": _ok("InboxPage", "a page of the inbox"),
                "400": _error("a parameter is invalid (named in `param`)"),
                **_GUARDED,
            },
        }
    },
    "/api/inbox/{event_id}/handled": {
        "parameters": [_EVENT_ID],
        "post": {
            "operationId": "markInboxHandled",
            "summary": "Mark an inbox lead handled",
            "responses": {
                "200": _ok("MarkResult", "the lead's status now"),
                "404": _error("no such lead"),
                **_GUARDED,
            },
        },
        "delete": {
            "operationId": "markInboxNew",
            "summary": "Mark an inbox lead new again",
            "responses": {
                "200": _ok("MarkResult", "the lead's status now"),
                "404": _error("no such lead"),
                **_GUARDED,
            },
        },
    },
    "/api/agents": {
        "post": {
            "operationId": "addAgent",
            "summary": "Add an agent: a person who may watch and answer live chats of its sites",
            "description": "The token is shown only here; it is kept hashed.",
            "requestBody": _json_body(
                ["id", "name"],
                {
                    "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,39}$"},
                    "name": {"type": "string", "minLength": 1, "maxLength": 80},
                    "sites": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "default: every site",
                    },
                },
            ),
            "responses": _created(
                "AgentMade", "added; the token is shown this once", "an agent with this id exists"
            ),
        },
        "get": {
            "operationId": "listAgents",
            "summary": "Every agent, oldest first (tokens are not shown)",
            "responses": {"200": _ok("AgentList", "the agents"), **_GUARDED},
        },
    },
    "/api/agents/{agent_id}": {
        "parameters": [_path("agent_id", "the agent's id")],
        "delete": {
            "operationId": "removeAgent",
            "summary": "Remove an agent: its token stops working, its sockets close",
            "responses": {
                "204": {"description": "removed"},
                "404": _error("no such agent"),
                **_GUARDED,
            },
        },
    },
    "/api/hooks": {
        "post": {
            "operationId": "subscribeHook",
            "summary": "Subscribe a REST hook (Zapier, Make, n8n)",
            "description": (
                "The target gets each matching event in the `external-lead` format, signed "
                "(Standard Webhooks) with the returned secret, which is shown only here. "
                "A target answering `410 Gone` is unsubscribed."
            ),
            "requestBody": _json_body(
                ["target_url", "event"],
                {
                    "target_url": {"type": "string", "format": "uri"},
                    "event": {"type": "string", "enum": list(EVENT_TYPES)},
                    "site": {"type": "string", "description": "default: every site"},
                },
            ),
            "responses": _created("HookCreated", "subscribed", f"already {MAX_HOOKS} hooks"),
        },
        "get": {
            "operationId": "listHooks",
            "summary": "Every REST hook, oldest first (secrets are not shown)",
            "responses": {"200": _ok("HookList", "the hooks"), **_GUARDED},
        },
    },
    "/api/hooks/{hook_id}": {
        "parameters": [_path("hook_id", "the id `POST /api/hooks` answered")],
        "delete": {
            "operationId": "unsubscribeHook",
            "summary": "Unsubscribe a REST hook; deliveries to it stop",
            "responses": {
                "204": {"description": "unsubscribed"},
                "404": _error("no such hook"),
                **_GUARDED,
            },
        },
    },
}
