"""Who may open the live console and the agent socket (CONTRACT §10).

The admin token (its login cookie, or ``Authorization: Bearer``) acts as agent
``admin`` for every site; an agent token (``Bearer agt_…``, or the login cookie an
agent gets by signing in with it on ``/admin/login``) as that agent, for its sites.
A wrong credential counts towards the same per-network throttle as the admin
surface's. The socket's ``Origin`` must be the server's own or
``PUBLIC_URL``'s, so a page on another site cannot open it with the visitor's
cookies (cross-site WebSocket hijacking); a client with no ``Origin`` at all is no
browser, and may connect with a bearer token only.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ..agents import ADMIN_AGENT, AGENT_COOKIE, Agent, Agents
from ..errors import StoreError
from ..limits import client_network
from ..runtime import Runtime
from .access import Endpoint, finish, runtime_of
from .auth import COOKIE, Credentials, decide, throttled
from .render import UNAVAILABLE, refuse, render

__all__ = ["ADMIN", "agent_of", "agent_page", "origin_ok"]

log = logging.getLogger("chatlead.admin")

ADMIN = Agent(ADMIN_AGENT, "Admin", [], 0)


def origin_ok(conn: HTTPConnection, runtime: Runtime) -> bool:
    """The handshake's ``Origin`` is ours (or ``PUBLIC_URL``'s), or absent with a bearer."""
    origin = conn.headers.get("origin")
    if origin is None:
        return conn.headers.get("authorization") is not None
    own = conn.headers.get("host")
    allowed = set()
    if own:
        allowed |= {f"http://{own}", f"https://{own}"}
    public = runtime.settings.public_url
    if public:
        parts = urlsplit(public)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return origin.rstrip("/") in allowed


async def agent_of(conn: HTTPConnection, runtime: Runtime) -> Agent | None:
    """The agent this request or handshake speaks for, or ``None``.

    Raises:
        StoreError: Redis cannot say.
    """
    creds = Credentials(runtime.store.redis, runtime.settings.admin_token)
    network = client_network(conn.client.host if conn.client else "-")
    snap = await creds.snapshot(network)
    if throttled(snap.failures):
        return None
    authorization = conn.headers.get("authorization")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and given.strip().startswith("agt_"):
        agent = await Agents(runtime.store.redis).by_token(given.strip())
        if agent is None:
            await creds.fail(network)
        return agent
    verdict = decide(
        snap.token,
        authorization=authorization,
        cookie=conn.cookies.get(COOKIE),
        generation=snap.generation,
        now_s=int(time.time()),
    )
    if verdict.failed:
        await creds.fail(network)
    if verdict.ok:
        return ADMIN
    cookie = conn.cookies.get(AGENT_COOKIE)
    if cookie and authorization is None:
        return await Agents(runtime.store.redis).by_cookie(cookie, int(time.time()))
    return None


def agent_page(fn: Endpoint) -> Endpoint:
    """A page an agent may open (the admin too): who it is goes in ``request.state.agent``.

    No credential: the sign-in page (it comes back here); Redis down: a 503 page.
    """

    async def run(request: Request) -> Response:
        try:
            agent = await agent_of(request, runtime_of(request))
        except StoreError as exc:
            log.warning("admin_store_unavailable error=%s", exc)
            return render(request, "error.html", 503, title="Unavailable", message=UNAVAILABLE)
        if agent is None:
            return refuse(request, 401, "an admin or agent token is required")
        request.state.agent = agent
        return finish(request, await fn(request))

    run.__name__ = fn.__name__
    return run
