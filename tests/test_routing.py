"""Which destinations take each event (pure)."""

from __future__ import annotations

from chatlead import formats
from chatlead.routing import Routes
from chatlead.sites import Destination, Site


def _site(site_id: str, *destinations: Destination) -> Site:
    return Site(id=site_id, destinations=destinations or (Destination(),))


def test_each_destination_takes_the_events_it_names() -> None:
    crm = formats.destination({"name": "crm", "url": "https://crm.example/x"})
    done = formats.destination(
        {"name": "done", "url": "https://done.example/x", "events": ["lead.completed"]}
    )
    routes = Routes({"a": _site("a", Destination(), crm, done), "b": _site("b")})
    assert routes.to("a", "lead.completed") == ["", ":crm", ":done"]
    assert routes.to("a", "lead.abandoned") == ["", ":crm"]
    assert routes.to("b", "lead.completed") == [""]
    assert routes.abandoned() == {"a": ["", ":crm"], "b": [""]}


def test_an_unknown_site_keeps_the_webhook_so_nothing_is_dropped() -> None:
    assert Routes({}).to("gone", "lead.completed") == [""]


def test_a_site_whose_destinations_skip_an_event_writes_none() -> None:
    only = formats.destination(
        {"name": "only", "url": "https://x.example/", "events": ["lead.completed"]}
    )
    assert Routes({"a": _site("a", only)}).to("a", "lead.abandoned") == []


def test_a_destination_with_when_carries_its_condition() -> None:
    hot = formats.destination(
        {"name": "hot", "url": "https://hot.example/", "when": {"score_at_least": 40}}
    )
    assert Routes({"a": _site("a", Destination(), hot)}).to("a", "lead.completed") == [
        "",
        [":hot", {"field": "score", "op": "at_least", "value": 40.0}],
    ]


def test_visitor_waiting_goes_only_where_it_is_asked_for() -> None:
    alert = formats.destination(
        {"name": "alert", "url": "https://a.example/", "events": ["visitor.waiting"]}
    )
    routes = Routes({"a": _site("a", Destination(), alert)})
    assert routes.to("a", "visitor.waiting") == [":alert"]
    assert routes.to("a", "lead.completed") == [""]
