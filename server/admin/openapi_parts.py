"""The building blocks of :mod:`.openapi_paths`: answers, parameters and bodies."""

from __future__ import annotations

from typing import Any

from .params import MAX_LIMIT

__all__ = [
    "CURSOR",
    "EVENT_ID",
    "GUARDED",
    "SESSION_ID",
    "SINCE",
    "SITE",
    "TIME",
    "UNTIL",
    "created_answer",
    "error_answer",
    "json_body",
    "limit_param",
    "ok_answer",
    "path_param",
    "query_param",
]


def error_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def ok_answer(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


GUARDED = {
    "401": error_answer("missing or wrong admin token"),
    "403": error_answer("refused: not a loopback client (no admin token set) or failed CSRF check"),
    "429": error_answer("too many wrong tokens from this address; wait `Retry-After` seconds"),
    "503": error_answer("Redis is unavailable"),
}


def json_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A required JSON object body with exactly these properties."""
    schema = {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": properties,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def created_answer(model: str, description: str, conflict: str) -> dict[str, Any]:
    """The answers of a ``POST`` that makes something from a JSON body naming a site."""
    return {
        "201": ok_answer(model, description),
        "400": error_answer("the body is invalid (the key named in `param`)"),
        "404": error_answer("unknown site"),
        "409": error_answer(conflict),
        "413": error_answer("the body is too large"),
        **GUARDED,
    }


def query_param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


TIME = {"type": "string", "examples": ["7d", "24h", "2024-05-01", "2024-05-01T09:30:00Z"]}
CURSOR = query_param(
    "cursor", "`next_cursor` of the previous page; omit for the first page", {"type": "string"}
)


def limit_param(default: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default}
    return query_param("limit", "page size", schema)


SESSION_ID = path_param("session_id", "24 lowercase hex digits")
SITE = query_param("site", "a site id; default all sites", {"type": "string"})
SINCE = query_param("since", "ISO-8601 date/time or relative (`7d`); default 30 days", TIME)
UNTIL = query_param("until", "ISO-8601 date/time or relative; default now", TIME)
EVENT_ID = path_param("event_id", "`evt_<session id>_completed|abandoned_<n>|test`")
