"""``GET /api/activity``: activity windows per region (1 hour or 1 day).

Parameters ``window`` (``1h``/``1d``), ``since``/``until`` (ISO-8601, on
``window_start``), ``region`` (a cell such as ``30N130E``), ``order``
(``time``/``count``) and ``limit`` (1-1000); see
:mod:`streamapp.activity.query`. A bad parameter is a 400, an unreachable
PostgreSQL a 503, both as ``{"error": str, "status": int}``.

Example::

    $ curl -s 'localhost:6066/api/activity?window=1d&order=count&limit=1'
    {"window": "1d", "since": "...", "until": null, "order": "count",
     "items": [{"region": "30N120W", "bounds": [30, -120, 40, -110], ...}]}
"""

from __future__ import annotations

import asyncio

from faust.web import Request, Response, View

from streamapp.activity.query import (
    list_activity,
    parse_activity_query,
)
from streamapp.app import app
from streamapp.views.api import json_errors, read_db

__all__ = ["ActivityListView"]


@app.page("/api/activity")
class ActivityListView(View):
    """Activity windows: window, since, until, region, order, limit."""

    @json_errors
    async def get(self, request: Request) -> Response:
        query = parse_activity_query(request.query)
        return self.json(await asyncio.to_thread(read_db, list_activity, query))
