"""Several destinations per site (CONTRACT §9): each event fans out to one outbox entry
per destination, with its own retries and order; one down never delays another."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SECRET, Receiver, Visitor, admin_headers, wait_for


def _config(tmp_path: Path, up: Receiver, down_port: int) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(
        f"""
[sites.acme]
idle_timeout = "1s"

[[sites.acme.destinations]]
name = "crm-a"
url = "{up.url}"
secret = "{SECRET}"
allow_private = true

[[sites.acme.destinations]]
name = "crm-b"
url = "http://127.0.0.1:{down_port}/hook"
secret = "{SECRET}"
allow_private = true
events = ["lead.completed", "lead.abandoned"]

[[sites.acme.destinations]]
name = "only-completed"
url = "{up.url}"
secret = "{SECRET}"
allow_private = true
events = ["lead.completed"]
"""
    )
    return path


async def test_one_destination_down_never_delays_another(
    app_factory: Any, tmp_path: Path, redis_url: str
) -> None:
    up, down = Receiver().start(), Receiver().start()
    down_port = down.port
    down.stop()  # down for the first seconds
    try:
        app = await app_factory(
            config=_config(tmp_path, up, down_port), retry_schedule="0,1s,1s,1s,1s,1s,1s,1s"
        )
        async with Visitor.connect(app.ws_url, site="acme") as v:
            await v.field("name", "Ada Lovelace")
            await v.field("email", "ada@example.com")
            await v.expect("lead", timeout=5)  # abandoned
            abandoned_at = time.monotonic()
            await wait_for(lambda: any(":crm-a" in i for i in up.ids()), 5)
            abandoned_latency = time.monotonic() - abandoned_at
            await v.field("phone", "+1 202 555 0143", frame_id="back-1")
            await v.field("message", "Boiler leaking", frame_id="back-2")
            assert (await v.expect("lead"))["status"] == "completed"
            completed_at = time.monotonic()
        sid = str(v.welcome["session_id"])
        base_completed = f"evt_{sid}_completed"
        await wait_for(lambda: f"{base_completed}:crm-a" in up.ids(), 5)
        completed_latency = time.monotonic() - completed_at
        await wait_for(lambda: f"{base_completed}:only-completed" in up.ids(), 5)
        assert abandoned_latency <= 1.0 and completed_latency <= 1.0
        # the abandoned lead went to crm-a and crm-b, not to the completed-only one
        assert not any("abandoned" in i and "only-completed" in i for i in up.ids())

        revived = Receiver().start(down_port)  # crm-b comes back
        try:
            await wait_for(lambda: len(revived.ids()) >= 2, 10)
            assert revived.ids() == [f"evt_{sid}_abandoned_1:crm-b", f"{base_completed}:crm-b"]
            assert revived.events[1]["data"]["isAbandoned"] is False
        finally:
            revived.stop()

        async with httpx.AsyncClient(base_url=app.base) as http:
            got = await http.get("/api/deliveries?limit=20", headers=admin_headers(redis_url))
            page = await http.get("/admin/deliveries", headers=admin_headers(redis_url))
        assert page.status_code == 200
        assert '<td data-label="Destination">only-completed</td>' in page.text
        items = {item["id"]: item for item in got.json()["items"]}
        assert items[f"{base_completed}:crm-a"]["destination"] == "crm-a"
        assert items[f"{base_completed}:crm-b"]["destination"] == "crm-b"
        assert len(items[f"{base_completed}:crm-b"]["attempts"]) >= 1
    finally:
        up.stop()


async def test_when_sends_only_the_leads_that_meet_it(
    app_factory: Any, tmp_path: Path, redis_url: str
) -> None:
    receiver = Receiver().start()
    path = tmp_path / "sites.toml"
    path.write_text(
        f"""
[sites.acme]
idle_timeout = "1s"

[[sites.acme.destinations]]
name = "all"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true

[[sites.acme.destinations]]
name = "boilers"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true
when = {{ field = "message", in = ["Boiler leaking", "No hot water"] }}

[[sites.acme.destinations]]
name = "with-phone"
url = "{receiver.url}"
secret = "{SECRET}"
allow_private = true
when = {{ field = "phone", present = true }}
"""
    )
    try:
        app = await app_factory(config=path)
        sessions = []
        for message in ("Boiler leaking", "Roof tiles"):
            async with Visitor.connect(app.ws_url, site="acme") as v:
                await v.field("name", "Ada Lovelace")
                await v.field("email", "ada@example.com")
                await v.field("phone", "")
                await v.field("message", message)
                assert (await v.expect("lead"))["status"] == "completed"
            sessions.append(str(v.welcome["session_id"]))
        boiler, roof = (f"evt_{sid}_completed" for sid in sessions)
        await wait_for(lambda: {f"{boiler}:all", f"{roof}:all"} <= set(receiver.ids()), 5)
        await wait_for(lambda: f"{boiler}:boilers" in receiver.ids(), 5)
        await asyncio.sleep(0.5)  # nothing else is on its way
        assert sorted(receiver.ids()) == sorted(
            [f"{boiler}:all", f"{roof}:all", f"{boiler}:boilers"]
        )
        async with httpx.AsyncClient(base_url=app.base) as http:
            got = await http.get("/api/deliveries?limit=20", headers=admin_headers(redis_url))
        destinations = sorted(item["destination"] for item in got.json()["items"])
        assert destinations == ["all", "all", "boilers"]  # no entry where `when` failed
    finally:
        receiver.stop()


class _Hanging:
    """A server that accepts connections and never answers (a CRM that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.held.append(conn)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()


async def test_a_hanging_destination_holds_only_its_own_slots(
    app_factory: Any, tmp_path: Path
) -> None:
    up, hanging = Receiver().start(), _Hanging()
    path = tmp_path / "sites.toml"
    path.write_text(
        f"""
[sites.acme]
[[sites.acme.destinations]]
name = "up"
url = "{up.url}"
secret = "{SECRET}"
allow_private = true

[[sites.acme.destinations]]
name = "hangs"
url = "http://127.0.0.1:{hanging.port}/hook"
allow_private = true
"""
    )
    try:
        app = await app_factory(config=path)
        completed: dict[str, float] = {}

        async def one() -> None:
            async with Visitor.connect(app.ws_url, site="acme") as v:
                await v.field("name", "Ada Lovelace")
                await v.field("email", "ada@example.com")
                await v.field("phone", "")
                await v.field("message", "Boiler leaking")
                assert (await v.expect("lead"))["status"] == "completed"
                completed[f"evt_{v.welcome['session_id']}_completed:up"] = time.time()

        for _ in range(4):  # 40 leads, each also sent to the hanging destination
            await asyncio.gather(*(one() for _ in range(10)))
        await wait_for(lambda: set(completed) <= set(up.ids()), 10)
        arrived = {r["headers"]["webhook-id"]: r["at"] for r in up.requests}
        waits = sorted(arrived[eid] - done for eid, done in completed.items())
        assert len(hanging.held) <= 16  # its share of the delivery slots (half), no more
        assert waits[-1] <= 1.0, [round(w, 2) for w in waits[-8:]]  # all 40 of the healthy one
    finally:
        hanging.close()
        up.stop()
