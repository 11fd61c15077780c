"""Which destinations take each event: the site's own (CONTRACT §9).

Pure: the session scripts write one outbox entry per destination this returns
(whose ``when`` holds on the session's fields), in the same atomic step as the state
change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .sites import EVENT_TYPES, Route, Site

if TYPE_CHECKING:
    from .hooks import Hook

__all__ = ["Routes"]


class Routes:
    """Destinations by site and event type, computed once from the sites and the REST
    hooks (a hook for no site in particular takes its event on every site)."""

    def __init__(self, sites: Mapping[str, Site], hooks: Iterable[Hook] = ()) -> None:
        self._by_site = {
            site.id: {kind: site.routes_for(kind) for kind in EVENT_TYPES}
            for site in sites.values()
        }
        for hook in hooks:
            for site_id, kinds in self._by_site.items():
                if hook.site in (None, site_id):
                    kinds[hook.event].append(hook.destination().event_suffix())
        self._abandoned = {site: kinds["lead.abandoned"] for site, kinds in self._by_site.items()}

    def to(self, site_id: str, event_type: str) -> list[Route]:
        """The destinations taking ``event_type``; an unknown site: the webhook's."""
        return self._by_site.get(site_id, {}).get(event_type, [""])

    def abandoned(self) -> dict[str, list[Route]]:
        """``{site: suffixes}`` for ``lead.abandoned`` (what ``sweep.lua`` is given)."""
        return self._abandoned
