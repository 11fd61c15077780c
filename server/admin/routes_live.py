"""The live agent console (CONTRACT §10): ``GET /admin/live`` and its static files.

The page is a shell: ``static/live.js`` opens the agent socket (``/agent``, same
origin, the login cookie goes along), keeps what it says about the live sessions and
sends what the agent does; ``static/live_view.js`` draws the chat list and the open
conversation. ``?session=<id>`` (where alerts link) opens that session once the socket
has listed it. The page needs script; it says so without.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..agents import ADMIN_AGENT
from .agent_access import agent_page
from .params import SESSION_ID
from .render import LIVE_CSP, LIVE_SCRIPT, LIVE_STYLESHEET, LIVE_VIEW_SCRIPT, render

__all__ = ["routes"]


@agent_page
async def live_page(request: Request) -> Response:
    """The console, for the admin or an agent (who sees no other admin page, so no
    links to them); a ``session`` that is not a session id is a 404 page."""
    session_id = request.query_params.get("session", "")
    if session_id and not SESSION_ID.match(session_id):
        return render(request, "error.html", 404, title="Not found", message="No such session.")
    agent = request.state.agent
    return render(
        request, "live.html", csp=LIVE_CSP, session_id=session_id, bare=agent.id != ADMIN_AGENT
    )


routes: list[BaseRoute] = [
    Route("/admin/live", live_page, methods=["GET"]),
    Route("/admin/live.js", LIVE_SCRIPT.serve, methods=["GET"]),
    Route("/admin/live_view.js", LIVE_VIEW_SCRIPT.serve, methods=["GET"]),
    Route("/admin/live.css", LIVE_STYLESHEET.serve, methods=["GET"]),
]
