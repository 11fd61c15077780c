"""The operator surface: the admin HTTP API, the admin pages and what they read.

Routes: :mod:`.routes_api` (``/api/*``, ``/openapi.json``), :mod:`.routes_pages`,
:mod:`.routes_login` and :mod:`.routes_live` (``/admin*``, the last the live console),
guarded by :mod:`.access` under the rules of :mod:`.auth`. Reads: :mod:`.queries`
over :mod:`.index_merge`; pure shapes in :mod:`.params`, :mod:`.rows`,
:mod:`.summary`, :mod:`.deliveries`, :mod:`.session_detail`, :mod:`.inbox`,
:mod:`.csv`, :mod:`.charts`. Changes: :mod:`.commands` (replay, test event) and
:mod:`.erase`. Pages are rendered by :mod:`.render` from ``templates/`` and
``static/``.
"""
