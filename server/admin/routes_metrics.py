"""``GET /metrics``: Prometheus' scrape, behind the admin token unless made public."""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .. import metrics
from ..errors import StoreError
from .access import guard

__all__ = ["routes"]

log = logging.getLogger("chatlead.metrics")


def _refuse(request: Request, status: int, reason: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return PlainTextResponse(f"{reason}\n", status_code=status, headers=headers)


async def _scrape(request: Request) -> Response:
    try:
        outbox_depth, sessions_open = await request.app.state.runtime.store.gauges()
    except StoreError:
        log.warning("metrics_store_unavailable")
        return PlainTextResponse("redis unreachable\n", status_code=503)
    body = metrics.exposition(outbox_depth, sessions_open)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


_guarded_scrape = guard(_refuse)(_scrape)


async def scrape(request: Request) -> Response:
    if request.app.state.runtime.settings.metrics_public:
        return await _scrape(request)
    return await _guarded_scrape(request)


routes: list[BaseRoute] = [Route("/metrics", scrape)]
