"""``GET /api/alerts``: stored alerts, newest detected first, with their delivery.

Filters ``since`` (ISO-8601, on ``detected_at``), ``rule`` (magnitude, tsunami,
pager, surge), ``region`` (a cell such as ``30N130E``); ``limit`` 1-1000
(default 100) and ``cursor`` (the previous page's ``next_cursor``). A bad
parameter is a 400, an unreachable PostgreSQL a 503, both as
``{"error": str, "status": int}``.

Example::

    $ curl -s 'localhost:6066/api/alerts?rule=magnitude&limit=2'
    {"items": [{"id": "magnitude:us7000abcd", ..., "delivery": {...}}],
     "next_cursor": "WyIyMDI2..."}
"""

from __future__ import annotations

import asyncio

from faust.web import Request, Response, View

from streamapp.alerts.queries import list_alerts, parse_alert_query
from streamapp.app import app
from streamapp.views.api import json_errors, read_db

__all__ = ["AlertListView"]


@app.page("/api/alerts")
class AlertListView(View):
    """Alerts, newest detected first. Filters: since, rule, region; limit (1-1000)
    and cursor (the next_cursor of the previous page)."""

    @json_errors
    async def get(self, request: Request) -> Response:
        query = parse_alert_query(request.query)
        return self.json(await asyncio.to_thread(read_db, list_alerts, query))
