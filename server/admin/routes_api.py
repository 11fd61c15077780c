"""The admin HTTP API (``/api/*``, CONTRACT §5 and §7) and ``/openapi.json``.

Every answer comes from :class:`.queries.Reader` (or :mod:`.commands`,
:mod:`.erase`); every route is admin-only (:func:`.access.guard`), answers JSON with
``cache-control: no-store`` and maps chatlead errors to one status each (400 bad
query, 404 unknown site, 503 Redis down).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import httpx
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..agents import AgentList, Agents, agent_problem
from ..errors import DeliveryError, StoreError
from ..formats.guard import check_target
from ..hooks import MAX_HOOKS, HookCreated, HookList, new_hook
from ..routing import Routes
from ..sites import EVENT_TYPES
from .access import Endpoint, guard, runtime_of
from .commands import release, replay, send_test_event
from .csv import csv_lines
from .deliveries import DeliveryPage
from .erase import erase_session
from .health import HealthList
from .inbox import parse_inbox_query
from .openapi import MODELS, openapi_json
from .params import (
    SESSION_ID,
    Period,
    QueryError,
    day_iso,
    delivery_status,
    parse_limit,
    parse_period,
    session_status,
)
from .queries import Reader

__all__ = ["routes"]

log = logging.getLogger("chatlead.api")

_ADAPTERS: dict[type, TypeAdapter[Any]] = {model: TypeAdapter(model) for model in MODELS}


def _dump(value: Any) -> bytes:
    """JSON bytes of an API answer (one of :data:`.openapi.MODELS`)."""
    return _ADAPTERS[type(value)].dump_json(value, by_alias=True)


def _error(status: int, code: str, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


REFUSALS = {
    401: "unauthorized",
    403: "forbidden",
    429: "too_many_attempts",
    503: "store_unavailable",
}


def _refuse(request: Request, status: int, reason: str) -> Response:
    response = _error(status, REFUSALS[status], reason)
    if status == 401:
        response.headers["www-authenticate"] = 'Bearer realm="chatlead"'
    return response


NO_STORE = {"cache-control": "no-store"}
"""Answers carry personal data: no cache may keep a copy."""


def _json(value: Any, status: int = 200) -> Response:
    if isinstance(value, dict):
        return JSONResponse(value, status_code=status, headers=NO_STORE)
    return Response(
        _dump(value), status_code=status, media_type="application/json", headers=NO_STORE
    )


def endpoint(fn: Endpoint) -> Endpoint:
    """Admin-only, and chatlead errors as JSON (400 bad query, 503 Redis down)."""

    guarded = guard(_refuse)(fn)

    async def run(request: Request) -> Response:
        try:
            return await guarded(request)
        except QueryError as exc:
            status = 404 if exc.param == "site" else 400
            code = "unknown_site" if status == 404 else "bad_request"
            return _error(status, code, str(exc), param=exc.param)
        except StoreError as exc:
            log.warning("api_store_unavailable error=%s", exc)
            return _error(503, "store_unavailable", "Redis is unavailable; try again shortly")

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


async def _period(request: Request, reader: Reader) -> Period:
    query = request.query_params
    return parse_period(query.get("since"), query.get("until"), await reader.now_ms())


def _filename(site: str | None, period: Period) -> str:
    first, last = day_iso(period.first_day), day_iso(period.last_day)
    return f"abandoned-{site or 'all'}-{first}-to-{last}.csv"


def csv_response(reader: Reader, site_id: str | None, period: Period) -> Response:
    """The report as a streamed CSV download (UTF-8 with BOM, for spreadsheets)."""
    sites = reader.sites(site_id)

    async def body() -> AsyncIterator[bytes]:
        rows = reader.abandoned_chunks(sites, period)
        yield next(csv_lines((), bom=True)).encode()
        try:
            async for chunk in rows:
                yield "".join(csv_lines([chunk], header=False)).encode()
        except StoreError as exc:  # headers are sent: all we can do is stop short
            log.warning("csv_export_interrupted error=%s", exc)

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{_filename(site_id, period)}"',
            **NO_STORE,
        },
    )


@endpoint
async def abandoned_report(request: Request) -> Response:
    """``GET /api/reports/abandoned?site=&since=&until=&format=json|csv&cursor=&limit=``."""
    reader = Reader(runtime_of(request))
    query = request.query_params
    form = query.get("format") or "json"
    if form not in ("json", "csv"):
        raise QueryError("format", "must be json or csv")
    site_id = query.get("site") or None
    period = await _period(request, reader)
    if form == "csv":
        return csv_response(reader, site_id, period)
    limit = parse_limit(query.get("limit"))
    return _json(await reader.report(site_id, period, query.get("cursor"), limit))


async def _site_report(request: Request, report: Any) -> Response:
    """A report over ``?site=`` (default all) and ``?since=&until=``: ``report(reader,
    sites, period)``, as JSON."""
    reader = Reader(runtime_of(request))
    sites = reader.sites(request.query_params.get("site") or None)
    return _json(await report(reader, sites, await _period(request, reader)))


@endpoint
async def summary_report(request: Request) -> Response:
    """``GET /api/reports/summary?site=&since=&until=``: totals, drop-off and per-day counts."""
    return await _site_report(request, Reader.summary)


@endpoint
async def recovery_report(request: Request) -> Response:
    """``GET /api/reports/recovery?site=&since=&until=`` (CONTRACT §11)."""
    return await _site_report(request, Reader.recovery)


@endpoint
async def list_sessions(request: Request) -> Response:
    """``GET /api/sessions?site=&status=&since=&until=&cursor=&limit=``."""
    reader = Reader(runtime_of(request))
    query = request.query_params
    status = session_status(query.get("status"))
    period = await _period(request, reader)
    limit = parse_limit(query.get("limit"), default=50)
    page = await reader.sessions(
        query.get("site") or None, period, status, query.get("cursor"), limit
    )
    return _json(page)


@endpoint
async def list_inbox(request: Request) -> Response:
    """``GET /api/inbox?status=new|handled&kind=leads|tests|all&q=&cursor=&limit=``."""
    query = request.query_params
    wanted = parse_inbox_query(query.get("status"), query.get("kind"), query.get("q"))
    limit = parse_limit(query.get("limit"), default=50)
    return _json(await Reader(runtime_of(request)).inbox(wanted, query.get("cursor"), limit))


@endpoint
async def mark_inbox(request: Request) -> Response:
    """``POST /api/inbox/{id}/handled`` marks a lead handled; ``DELETE`` makes it new again."""
    reader = Reader(runtime_of(request))
    result = await reader.mark(request.path_params["event_id"], request.method == "POST")
    if result is None:
        return _error(404, "not_found", "no such lead")
    return _json(result)


@endpoint
async def get_session(request: Request) -> Response:
    """``GET /api/sessions/{id}``: transcript, fields, lead and its delivery events."""
    detail = await Reader(runtime_of(request)).session(request.path_params["session_id"])
    if detail is None:
        return _error(404, "not_found", "no such session")
    return _json(detail)


@endpoint
async def delete_session(request: Request) -> Response:
    """``DELETE /api/sessions/{id}``: erase the session's personal data everywhere."""
    session_id = request.path_params["session_id"]
    if not SESSION_ID.match(session_id):
        return _error(404, "not_found", "no such session")
    result = await erase_session(runtime_of(request), session_id)
    if not result.found:
        return _error(404, "not_found", "no such session")
    return _json(asdict(result))


@endpoint
async def experiments_report(request: Request) -> Response:
    """``GET /api/reports/experiments?site=&since=&until=`` (CONTRACT §12)."""
    return await _site_report(request, Reader.experiments)


@endpoint
async def release_session(request: Request) -> Response:
    """``POST /api/sessions/{id}/release``: forward a session flagged spam (§12)."""
    session_id = request.path_params["session_id"]
    if not SESSION_ID.match(session_id):
        return _error(404, "not_found", "no such session")
    outcome = await release(runtime_of(request), session_id)
    if outcome == "gone":
        return _error(404, "not_found", "no such session")
    if outcome == "not_spam":
        return _error(409, "not_spam", "the session is not flagged spam")
    return JSONResponse({"session_id": session_id, "released": True}, headers=NO_STORE)


@endpoint
async def list_deliveries(request: Request) -> Response:
    """``GET /api/deliveries?status=pending|delivered|dead&cursor=&limit=``."""
    query = request.query_params
    status = delivery_status(query.get("status"))
    limit = parse_limit(query.get("limit"), default=50)
    items, cursor = await Reader(runtime_of(request)).deliveries(status, query.get("cursor"), limit)
    return _json(DeliveryPage(items, cursor))


@endpoint
async def list_destinations(request: Request) -> Response:
    """``GET /api/destinations?site=``: each destination's delivery health at a glance."""
    reader = Reader(runtime_of(request))
    sites = reader.sites(request.query_params.get("site") or None)
    return _json(HealthList(await reader.destination_health(sites, await reader.now_ms())))


@endpoint
async def get_delivery(request: Request) -> Response:
    item = await Reader(runtime_of(request)).delivery(request.path_params["event_id"])
    if item is None:
        return _error(404, "not_found", "no such delivery")
    return _json(item)


@endpoint
async def replay_delivery(request: Request) -> Response:
    """``POST /api/deliveries/{id}/replay``: send a delivered or dead event again."""
    runtime = runtime_of(request)
    event_id = request.path_params["event_id"]
    outcome = await replay(runtime, event_id)
    if outcome == "missing":
        return _error(404, "not_found", "no such delivery")
    if outcome == "pending":
        return _error(409, "already_pending", "this event is already waiting for delivery")
    item = await Reader(runtime).delivery(event_id)
    return _json(item if item is not None else {"id": event_id}, status=202)


async def _hook_request(request: Request) -> tuple[str, str, str | None]:
    """``target_url``, ``event`` and ``site`` of a subscription, checked."""
    body = await _json_object(request)
    unknown = sorted(set(body) - {"target_url", "event", "site"})
    if unknown:
        raise QueryError(unknown[0], "unknown key; use target_url, event and site")
    target, event, site = body.get("target_url"), body.get("event"), body.get("site")
    if not isinstance(target, str) or not target:
        raise QueryError("target_url", "required: the URL events are POSTed to")
    if not isinstance(event, str) or event not in EVENT_TYPES:
        raise QueryError("event", f"required: one of {', '.join(EVENT_TYPES)}")
    if site is not None and not isinstance(site, str):
        raise QueryError("site", "must be a site id")
    return target, event, site


@endpoint
async def subscribe_hook(request: Request) -> Response:
    """``POST /api/hooks {"target_url", "event", "site"?}`` -> ``201 {"id", "secret"}``."""
    runtime = runtime_of(request)
    target, event, site = await _hook_request(request)
    if site is not None and site not in runtime.sites:
        raise QueryError("site", f"unknown site {site!r}")
    allow_private = runtime.settings.webhook_allow_private
    try:
        await check_target(target, allow_private)
    except (DeliveryError, httpx.ConnectError) as exc:  # refused, or its host is unknown
        raise QueryError("target_url", str(exc)) from None
    hooks = runtime.hooks
    if len(await hooks.load()) >= MAX_HOOKS:
        return _error(409, "too_many_hooks", f"at most {MAX_HOOKS} hooks; delete one first")
    hook = new_hook(target, event, site, allow_private)
    await hooks.add(hook)
    runtime.routes = Routes(runtime.sites, hooks.current)
    log.info("hook_subscribed id=%s event=%s site=%s", hook.id, event, site or "*")
    return _json(HookCreated(hook.id, hook.secret), status=201)


@endpoint
async def list_hooks(request: Request) -> Response:
    """``GET /api/hooks``: every REST hook, oldest first (without secrets)."""
    hooks = await runtime_of(request).hooks.load()
    return _json(HookList([hook.listed() for hook in hooks]))


@endpoint
async def unsubscribe_hook(request: Request) -> Response:
    """``DELETE /api/hooks/{id}`` -> 204; later deliveries to it stop."""
    runtime = runtime_of(request)
    if not await runtime.hooks.remove(request.path_params["hook_id"]):
        return _error(404, "not_found", "no such hook")
    runtime.routes = Routes(runtime.sites, runtime.hooks.current)
    return Response(status_code=204, headers=NO_STORE)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise QueryError("body", "must be a JSON object") from None
    if not isinstance(body, dict):
        raise QueryError("body", "must be a JSON object")
    return body


@endpoint
async def add_agent(request: Request) -> Response:
    """``POST /api/agents {"id", "name", "sites"?}`` -> ``201 {"id", "name", "token"}``."""
    runtime = runtime_of(request)
    body = await _json_object(request)
    unknown = sorted(set(body) - {"id", "name", "sites"})
    if unknown:
        raise QueryError(unknown[0], "unknown key; use id, name and sites")
    sites = body.get("sites", [])
    problem = agent_problem(body.get("id"), body.get("name"), sites, runtime.sites)
    if problem is not None:
        raise QueryError(*problem)
    made = await Agents(runtime.store.redis).add(body["id"], body["name"], sites)
    if made is None:
        return _error(409, "agent_exists", f"an agent {body['id']!r} exists; delete it first")
    log.info("agent_added id=%s sites=%d", made.id, len(sites))
    return _json(made, status=201)


@endpoint
async def list_agents(request: Request) -> Response:
    """``GET /api/agents``: every agent, oldest first (never a token)."""
    return _json(AgentList(await Agents(runtime_of(request).store.redis).all()))


@endpoint
async def remove_agent(request: Request) -> Response:
    """``DELETE /api/agents/{id}`` -> 204; its token stops working and its sockets close."""
    agent_id = request.path_params["agent_id"]
    if not await Agents(runtime_of(request).store.redis).remove(agent_id):
        return _error(404, "not_found", "no such agent")
    log.info("agent_removed id=%s", agent_id)
    return Response(status_code=204, headers=NO_STORE)


@endpoint
async def test_event(request: Request) -> Response:
    """``POST /api/sites/{site}/test-event``."""
    runtime = runtime_of(request)
    event_id, *_ = await send_test_event(runtime, request.path_params["site"])
    item = await Reader(runtime).delivery(event_id)
    return _json(item if item is not None else {"id": event_id}, status=202)


routes: list[BaseRoute] = [
    Route("/api/reports/abandoned", abandoned_report, methods=["GET"]),
    Route("/api/reports/summary", summary_report, methods=["GET"]),
    Route("/api/reports/recovery", recovery_report, methods=["GET"]),
    Route("/api/reports/experiments", experiments_report, methods=["GET"]),
    Route("/api/sessions/{session_id}/release", release_session, methods=["POST"]),
    Route("/api/sessions", list_sessions, methods=["GET"]),
    Route("/api/sessions/{session_id}", get_session, methods=["GET"]),
    Route("/api/sessions/{session_id}", delete_session, methods=["DELETE"]),
    Route("/api/deliveries", list_deliveries, methods=["GET"]),
    Route("/api/deliveries/{event_id}", get_delivery, methods=["GET"]),
    Route("/api/destinations", list_destinations, methods=["GET"]),
    Route("/api/deliveries/{event_id}/replay", replay_delivery, methods=["POST"]),
    Route("/api/sites/{site}/test-event", test_event, methods=["POST"]),
    Route("/api/inbox", list_inbox, methods=["GET"]),
    Route("/api/inbox/{event_id}/handled", mark_inbox, methods=["POST", "DELETE"]),
    Route("/api/agents", add_agent, methods=["POST"]),
    Route("/api/agents", list_agents, methods=["GET"]),
    Route("/api/agents/{agent_id}", remove_agent, methods=["DELETE"]),
    Route("/api/hooks", subscribe_hook, methods=["POST"]),
    Route("/api/hooks", list_hooks, methods=["GET"]),
    Route("/api/hooks/{hook_id}", unsubscribe_hook, methods=["DELETE"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]
