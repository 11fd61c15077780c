"""Drop-off by step with a branching flow (CONTRACT §12): a step's "reached" is the
sessions that were asked it, counted by the real scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Visitor, admin_headers

SITE = """
[sites.acme]
[[sites.acme.flow]]
field = "service"
kind = "choice"
ask = "What do you need?"
options = ["Leak", "Other"]
[[sites.acme.flow]]
field = "budget"
ask = "Your budget?"
when = { field = "service", equals = "Leak" }
[[sites.acme.flow]]
field = "name"
ask = "Your name?"
"""


async def test_a_skipped_step_is_not_counted_as_reached(
    app_factory: Any, tmp_path: Path, http: httpx.AsyncClient, redis_url: str
) -> None:
    path = tmp_path / "chatlead.toml"
    path.write_text(SITE)
    app = await app_factory(config=path)
    for service in ("Leak", "Leak", "Other"):
        async with Visitor.connect(app.ws_url, site="acme") as v:
            assert (await v.field("service", service))["type"] == "ack"
            if service == "Leak":
                assert (await v.field("budget", "500"))["type"] == "ack"
    summary = await http.get(
        f"{app.base}/api/reports/summary?site=acme", headers=admin_headers(redis_url)
    )
    steps = {s["step"]: s["reached"] for s in summary.json()["drop_off"]}
    assert steps == {"service": 3, "budget": 2, "name": 3}
