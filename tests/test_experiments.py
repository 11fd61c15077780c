"""Experiments (CONTRACT §12): sticky weighted variants, the statistics against values
worked out by hand, and the real app: each variant's greeting and flow, the lead's
``variant`` field, and ``GET /api/reports/experiments``."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from chatlead.errors import ConfigError
from chatlead.experiments import Variant, choose, two_proportion_p, wilson
from chatlead.site_config import load_sites

from tests.conftest import SECRET, Receiver, Visitor, admin_headers, settings_for, wait_for


def test_a_visitor_keeps_their_variant_and_weights_hold() -> None:
    arms = [Variant(name="long", weight=3), Variant(name="short", weight=1)]
    assert all(choose(arms, "acme", f"v_{n}") == choose(arms, "acme", f"v_{n}") for n in range(100))
    counts = Counter(choose(arms, "acme", f"v_{n}").name for n in range(20_000))  # type: ignore[union-attr]
    assert abs(counts["long"] / 20_000 - 0.75) < 0.02
    # another site splits the same visitors independently
    other = Counter(
        (choose(arms, "acme", f"v_{n}").name, choose(arms, "beta", f"v_{n}").name)  # type: ignore[union-attr]
        for n in range(20_000)
    )
    assert abs(other["short", "short"] / 20_000 - 1 / 16) < 0.01
    assert choose([], "acme", "v_1") is None


def test_wilson_intervals_match_the_textbook() -> None:
    # statsmodels.stats.proportion.proportion_confint(k, n, method="wilson")
    for k, n, low, high in ((50, 100, 0.403832, 0.596168), (0, 10, 0.0, 0.277533),
                            (10, 10, 0.722467, 1.0), (1, 3, 0.061492, 0.792340)):  # fmt: skip
        interval = wilson(k, n)
        assert math.isclose(interval.low, low, abs_tol=1e-6), (k, n)
        assert math.isclose(interval.high, high, abs_tol=1e-6), (k, n)
    assert wilson(0, 0).low == 0.0 and wilson(0, 0).high == 1.0


def test_the_two_proportion_z_test_by_hand() -> None:
    # 60/100 vs 50/100: pooled p = 0.55, se = sqrt(0.55 * 0.45 * 0.02) = 0.0703562,
    # z = 0.1 / se = 1.421338, two-sided p = erfc(z / sqrt 2) = 0.155218
    assert math.isclose(two_proportion_p(60, 100, 50, 100) or 0, 0.155218, abs_tol=1e-6)
    assert two_proportion_p(5, 10, 5, 10) == 1.0
    assert two_proportion_p(0, 10, 0, 10) == 1.0  # nothing varies
    assert two_proportion_p(1, 0, 5, 10) is None
    assert (two_proportion_p(600, 1000, 500, 1000) or 1) < 1e-5


SITE = """
[sites.acme]
idle_timeout = "1s"

[[sites.acme.destinations]]
name = "crm"
url = "{hook}"
secret = "{secret}"
allow_private = true

[sites.acme.qualify]
qualified_at = 10

[[sites.acme.variants]]
name = "long"
weight = 1

[[sites.acme.variants]]
name = "short"
weight = 1
greeting = "Quick question!"
flow = [{{ field = "email", ask = "Your email?", required = true }}]
"""


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ('[[sites.acme.variants]]\nname = "Bad Name"', "variants.0.name"),
        ('[[sites.acme.variants]]\nname = "a"\n[[sites.acme.variants]]\nname = "a"', "variants"),
        (
            '[[sites.acme.variants]]\nname = "a"\nflow = [{ field = "x", ask = "?", '
            'when = { field = "nope", equals = "1" } }]',
            "variants.0.flow.0.when",
        ),
        ('[[sites.acme.variants]]\nname = "a"\nweight = 0', "variants.0.weight"),
    ],
)
def test_a_bad_variant_stops_the_start_naming_the_key(
    tmp_path: Path, redis_url: str, block: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[sites.acme]\n{block}\n")
    with pytest.raises(ConfigError, match=rf"sites\.acme\.{key}\b"):
        load_sites(settings_for(redis_url, config=path))


def _users(arm: str, count: int) -> list[str]:
    arms = [Variant(name="long"), Variant(name="short")]
    found = (f"u_{n}" for n in range(10_000))
    return [u for u in found if choose(arms, "acme", u).name == arm][:count]  # type: ignore[union-attr]


async def test_each_variant_shows_its_flow_and_is_reported(
    app_factory: Any,
    tmp_path: Path,
    receiver: Receiver,
    http: httpx.AsyncClient,
    redis_url: str,
) -> None:
    path = tmp_path / "chatlead.toml"
    path.write_text(SITE.format(hook=receiver.url, secret=SECRET))
    app = await app_factory(config=path, webhook_allow_private=True)
    for user in _users("short", 3):  # the short flow: one question, and it completes
        async with Visitor.connect(app.ws_url, site="acme", user_id=user, variant="long") as v:
            assert v.welcome["transcript"][0]["text"] == "Quick question!"  # hello's is ignored
            assert v.welcome["prompt"]["field"] == "email"
            await v.field("email", f"{user}@example.com")
            await v.expect("lead")
    [long_user] = _users("long", 1)
    async with Visitor.connect(app.ws_url, site="acme", user_id=long_user) as v:
        assert v.welcome["prompt"]["field"] == "name"  # the site's own flow
        await v.field("name", "Ada")
    # the same visitor again: the same variant
    async with Visitor.connect(app.ws_url, site="acme", user_id=long_user) as again:
        assert again.welcome["prompt"]["field"] == "name"
    await wait_for(lambda: len(receiver.events) >= 3, 10)
    lead = receiver.events[0]["data"]
    assert {"name": "variant", "value": "short"} in lead["fields"]
    report = await http.get(
        f"{app.base}/api/reports/experiments?site=acme", headers=admin_headers(redis_url)
    )
    assert report.status_code == 200, report.text
    [site] = report.json()["sites"]
    arms = {arm["variant"]: arm for arm in site["variants"]}
    assert [arm["variant"] for arm in site["variants"]] == ["long", "short"]
    assert (arms["long"]["sessions"], arms["long"]["completed"]) == (2, 0)
    assert (arms["short"]["sessions"], arms["short"]["completed"]) == (3, 3)
    assert arms["short"]["qualified"] == 3  # an email is worth 10
    assert arms["short"]["completion_rate"] == 1.0 and arms["long"]["p_value"] is None
    assert arms["short"]["p_value"] == round(two_proportion_p(3, 3, 0, 2) or 0, 6)
    low = wilson(3, 3).low
    assert math.isclose(arms["short"]["completion_interval"]["low"], low)
    summary = await http.get(
        f"{app.base}/api/reports/summary?site=acme", headers=admin_headers(redis_url)
    )
    [acme] = summary.json()["sites"]
    assert (acme["qualified"], acme["qualified_rate"]) == (3, 1.0)  # per site, too
