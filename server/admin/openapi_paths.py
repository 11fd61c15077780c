"""Paths, parameters and answers of the admin HTTP API in the OpenAPI document.

Written out by hand (response schemas are generated, see :mod:`.openapi`); each
path lists every status it can answer.
"""

from __future__ import annotations

from typing import Any

from ..hooks import MAX_HOOKS
from ..sites import EVENT_TYPES
from .inbox import MAX_QUERY
from .openapi_parts import (
    CURSOR,
    EVENT_ID,
    GUARDED,
    SESSION_ID,
    SINCE,
    SITE,
    UNTIL,
    created_answer,
    error_answer,
    json_body,
    limit_param,
    ok_answer,
    path_param,
    query_param,
)
from .params import MAX_DAYS

__all__ = ["PATHS"]


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
                SITE,
                SINCE,
                UNTIL,
                query_param("format", "answer format", {"type": "string", "enum": ["json", "csv"]}),
                CURSOR,
                limit_param(100),
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
                "400": error_answer("a parameter is invalid (named in `param`)"),
                "404": error_answer("unknown site"),
                **GUARDED,
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
            "parameters": [SITE, SINCE, UNTIL],
            "responses": {
                "200": ok_answer("Summary", "the summary"),
                "400": error_answer("a parameter is invalid (named in `param`)"),
                "404": error_answer("unknown site"),
                **GUARDED,
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
            "parameters": [SITE, SINCE, UNTIL],
            "responses": {
                "200": ok_answer("RecoveryReport", "the report"),
                "400": error_answer("a parameter is invalid (named in `param`)"),
                "404": error_answer("unknown site"),
                **GUARDED,
            },
        }
    },
    "/api/reports/experiments": {
        "get": {
            "operationId": "experimentsReport",
            "summary": "Each variant's completion rate, Wilson interval and p-value",
            "description": (
                "Per site that runs an experiment, per variant: sessions, completed, "
                "qualified, completion rate with its 95 % Wilson interval, and the two-sided "
                "p-value of a two-proportion z-test against the first variant; counted over "
                "the whole UTC days the period touches."
            ),
            "parameters": [SITE, SINCE, UNTIL],
            "responses": {
                "200": ok_answer("ExperimentReport", "the report"),
                "400": error_answer("a parameter is invalid (named in `param`)"),
                "404": error_answer("unknown site"),
                **GUARDED,
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
                SITE,
                query_param(
                    "status",
                    "only sessions in this state now (`spam`: held back as spam, §12); default all",
                    {"type": "string", "enum": ["open", "completed", "abandoned", "spam"]},
                ),
                SINCE,
                UNTIL,
                CURSOR,
                limit_param(50),
            ],
            "responses": {
                "200": ok_answer("SessionPage", "a page of sessions"),
                "400": error_answer("a parameter is invalid (named in `param`)"),
                "404": error_answer("unknown site"),
                **GUARDED,
            },
        }
    },
    "/api/sessions/{session_id}": {
        "parameters": [SESSION_ID],
        "get": {
            "operationId": "getSession",
            "summary": "One session: transcript, fields, lead and delivery events",
            "responses": {
                "200": ok_answer("SessionDetail", "the session"),
                "404": error_answer("no such session (or not a session id)"),
                **GUARDED,
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
                "404": error_answer("nothing stored for this session"),
                **GUARDED,
            },
        },
    },
    "/api/sessions/{session_id}/release": {
        "parameters": [SESSION_ID],
        "post": {
            "operationId": "releaseSession",
            "summary": "Forward a session flagged spam to its site's destinations",
            "description": (
                "A completed session gets its `lead.completed` event, an abandoned one the "
                "`lead.abandoned` of its last abandonment; an open one is unflagged and "
                "forwarded when it ends."
            ),
            "responses": {
                "200": {
                    "description": "released",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "404": error_answer("no such session (or not a session id)"),
                "409": error_answer("the session is not flagged spam (or was released)"),
                **GUARDED,
            },
        },
    },
    "/api/deliveries": {
        "get": {
            "operationId": "listDeliveries",
            "summary": "The delivery log, newest first",
            "description": "A filtered page may hold fewer items; follow `next_cursor`.",
            "parameters": [
                query_param(
                    "status",
                    "only events in this state; default all",
                    {"type": "string", "enum": ["pending", "delivered", "dead"]},
                ),
                CURSOR,
                limit_param(50),
            ],
            "responses": {
                "200": ok_answer("DeliveryPage", "a page of the log"),
                "400": error_answer("a parameter is invalid"),
                **GUARDED,
            },
        }
    },
    "/api/deliveries/{event_id}": {
        "parameters": [EVENT_ID],
        "get": {
            "operationId": "getDelivery",
            "summary": "One event and its attempts",
            "responses": {
                "200": ok_answer("DeliveryItem", "the event"),
                "404": error_answer("no such event"),
                **GUARDED,
            },
        },
    },
    "/api/deliveries/{event_id}/replay": {
        "parameters": [EVENT_ID],
        "post": {
            "operationId": "replayDelivery",
            "summary": "Deliver a delivered or dead event again (same id)",
            "responses": {
                "202": ok_answer("DeliveryItem", "queued; the event as it is now"),
                "404": error_answer("no such event"),
                "409": error_answer("the event is already waiting for delivery"),
                **GUARDED,
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
            "parameters": [SITE],
            "responses": {
                "200": ok_answer("HealthList", "the destinations, in config order"),
                "404": error_answer("unknown site"),
                **GUARDED,
            },
        }
    },
    "/api/sites/{site}/test-event": {
        "parameters": [path_param("site", "a site id")],
        "post": {
            "operationId": "sendTestEvent",
            "summary": "Queue a signed sample lead (`lead.test`) to check the CRM side",
            "responses": {
                "202": ok_answer("DeliveryItem", "queued"),
                "404": error_answer("unknown site"),
                **GUARDED,
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
                query_param(
                    "status",
                    "only new or only handled leads; default both",
                    {"type": "string", "enum": ["new", "handled"]},
                ),
                query_param(
                    "kind",
                    "real leads, test events or both; default leads",
                    {"type": "string", "enum": ["leads", "tests", "all"]},
                ),
                query_param("q", "search text", {"type": "string", "maxLength": MAX_QUERY}),
                CURSOR,
                limit_param(50),
            ],
            "responses": {
                "200": ok_answer("InboxPage", "a page of the inbox"),
                "400": error_answer("a parameter is invalid (named in `param`)"),
                **GUARDED,
            },
        }
    },
    "/api/inbox/{event_id}/handled": {
        "parameters": [EVENT_ID],
        "post": {
            "operationId": "markInboxHandled",
            "summary": "Mark an inbox lead handled",
            "responses": {
                "200": ok_answer("MarkResult", "the lead's status now"),
                "404": error_answer("no such lead"),
                **GUARDED,
            },
        },
        "delete": {
            "operationId": "markInboxNew",
            "summary": "Mark an inbox lead new again",
            "responses": {
                "200": ok_answer("MarkResult", "the lead's status now"),
                "404": error_answer("no such lead"),
                **GUARDED,
            },
        },
    },
    "/api/agents": {
        "post": {
            "operationId": "addAgent",
            "summary": "Add an agent: a person who may watch and answer live chats of its sites",
            "description": "The token is shown only here; it is kept hashed.",
            "requestBody": json_body(
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
            "responses": created_answer(
                "AgentMade", "added; the token is shown this once", "an agent with this id exists"
            ),
        },
        "get": {
            "operationId": "listAgents",
            "summary": "Every agent, oldest first (tokens are not shown)",
            "responses": {"200": ok_answer("AgentList", "the agents"), **GUARDED},
        },
    },
    "/api/agents/{agent_id}": {
        "parameters": [path_param("agent_id", "the agent's id")],
        "delete": {
            "operationId": "removeAgent",
            "summary": "Remove an agent: its token stops working, its sockets close",
            "responses": {
                "204": {"description": "removed"},
                "404": error_answer("no such agent"),
                **GUARDED,
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
            "requestBody": json_body(
                ["target_url", "event"],
                {
                    "target_url": {"type": "string", "format": "uri"},
                    "event": {"type": "string", "enum": list(EVENT_TYPES)},
                    "site": {"type": "string", "description": "default: every site"},
                },
            ),
            "responses": created_answer("HookCreated", "subscribed", f"already {MAX_HOOKS} hooks"),
        },
        "get": {
            "operationId": "listHooks",
            "summary": "Every REST hook, oldest first (secrets are not shown)",
            "responses": {"200": ok_answer("HookList", "the hooks"), **GUARDED},
        },
    },
    "/api/hooks/{hook_id}": {
        "parameters": [path_param("hook_id", "the id `POST /api/hooks` answered")],
        "delete": {
            "operationId": "unsubscribeHook",
            "summary": "Unsubscribe a REST hook; deliveries to it stop",
            "responses": {
                "204": {"description": "unsubscribed"},
                "404": error_answer("no such hook"),
                **GUARDED,
            },
        },
    },
}
