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
    assert routes.suffixes("a", "lead.completed") == ["", ":crm", ":done"]
    assert routes.suffixes("a", "lead.abandoned") == ["", ":crm"]
    assert routes.suffixes("b", "lead.completed") == [""]
    assert routes.abandoned() == {"a": ["", ":crm"], "b": [""]}


def test_an_unknown_site_keeps_the_webhook_so_nothing_is_dropped() -> None:
    assert Routes({}).suffixes("gone", "lead.completed") == [""]


def test_a_site_whose_destinations_skip_an_event_writes_none() -> None:
    only = formats.destination(
        {"name": "only", "url": "https://x.example/", "events": ["lead.completed"]}
    )
    assert Routes({"a": _site("a", only)}).suffixes("a", "lead.abandoned") == []
