"""Which destinations take each event: the site's own (CONTRACT §9).

Pure: the session scripts write one outbox entry per destination suffix this
returns, in the same atomic step as the state change.
"""

from __future__ import annotations

from collections.abc import Mapping

from .sites import LEAD_EVENTS, Site

__all__ = ["Routes"]


class Routes:
    """Destination suffixes by site and event type, computed once from the sites."""

    def __init__(self, sites: Mapping[str, Site]) -> None:
        self._by_site = {
            site.id: {kind: site.suffixes_for(kind) for kind in LEAD_EVENTS}
            for site in sites.values()
        }

    def suffixes(self, site_id: str, event_type: str) -> list[str]:
        """Suffixes of the destinations taking ``event_type``; an unknown site: the webhook's."""
        return self._by_site.get(site_id, {}).get(event_type, [""])

    def abandoned(self) -> dict[str, list[str]]:
        """``{site: suffixes}`` for ``lead.abandoned`` (what ``sweep.lua`` is given)."""
        return {site: kinds["lead.abandoned"] for site, kinds in self._by_site.items()}
