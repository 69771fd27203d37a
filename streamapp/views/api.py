"""The read API (earthquakes, dead letters, consumer lag) and the redrive endpoint."""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg2
import sqlalchemy.exc
from aiohttp import web
from faust.web import Request, Response, View

from streamapp.app import app, settings
from streamapp.db import get_engine, translate_error
from streamapp.exceptions import BadRequest
from streamapp.lag import lag_reader
from streamapp.metrics import set_lag_report
from streamapp.queries import (
    DeadLetterQuery,
    QuakeQuery,
    RedriveSelection,
    get_earthquake,
    list_dead_letters,
    list_earthquakes,
    parse_dead_letter_query,
    parse_event_id,
    parse_kind,
    parse_quake_query,
    parse_time,
)
from streamapp.redrive import redrive
from streamapp.settings import Settings

__all__ = [
    "DeadLetterListView",
    "EarthquakeListView",
    "EarthquakeView",
    "LagView",
    "RedriveView",
    "check_bearer",
    "parse_redrive_body",
    "read_db",
]

log = logging.getLogger(__name__)

#: Largest redrive request body accepted (bytes).
MAX_REDRIVE_BODY = 64 * 1024
#: Keys a redrive request body may have.
REDRIVE_KEYS = ("kind", "since", "ids", "limit", "dry_run")
#: Most ids one redrive request may name.
MAX_REDRIVE_IDS = 10_000
#: Largest dead-letter id (``bigserial``): a larger one is a 400, not a 500.
MAX_DEAD_LETTER_ID = 2**63 - 1

Handler = Callable[..., Awaitable[Response]]


def _error(view: View, status: int, message: str, **extra: Any) -> Response:
    return view.json({"error": message, "status": status, **extra}, status=status)


def _json_text(view: View, text: str, status: int = 200) -> Response:
    """A response of JSON already encoded (by PostgreSQL or Page.to_json)."""
    return view.bytes(
        text.encode("utf-8"),
        status=status,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )


def json_errors(handler: Handler) -> Handler:
    """Turn every failure of a handler into a JSON error: 400 for bad parameters,
    503 when PostgreSQL is unreachable, 500 otherwise; never a stack trace."""

    @functools.wraps(handler)
    async def wrapper(
        self: View, request: Request, *args: Any, **kwargs: Any
    ) -> Response:
        try:
            return await handler(self, request, *args, **kwargs)
        except BadRequest as exc:
            return _error(self, 400, str(exc))
        except (sqlalchemy.exc.SQLAlchemyError, psycopg2.Error) as exc:
            log.warning(
                "%s %s: %s",
                request.method,
                request.rel_url.path,
                translate_error(exc, settings),
            )
            return _error(self, 503, "the database is unavailable; try again later")
        except Exception:
            log.exception("%s %s failed", request.method, request.rel_url.path)
            return _error(self, 500, "internal error; see the worker log")

    return wrapper


def read_db(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a query function with a pooled connection (blocking: call in a thread)."""
    with get_engine(settings).connect() as conn:
        return fn(conn, settings.postgres_schema, *args)


@app.page("/api/earthquakes")
class EarthquakeListView(View):
    """Earthquakes, newest first. Filters: since, until, min_magnitude,
    max_magnitude, bbox=min_lon,min_lat,max_lon,max_lat; limit (1-1000) and
    cursor (the next_cursor of the previous page)."""

    @json_errors
    async def get(self, request: Request) -> Response:
        query: QuakeQuery = parse_quake_query(request.query)
        page = await asyncio.to_thread(read_db, list_earthquakes, query)
        return _json_text(self, page.to_json())


@app.page("/api/earthquakes/{event_id}")
class EarthquakeView(View):
    """One earthquake by its USGS id; 404 when there is none."""

    @json_errors
    async def get(self, request: Request, event_id: str) -> Response:
        event = parse_event_id(event_id)
        doc = await asyncio.to_thread(read_db, get_earthquake, event)
        if doc is None:
            return _error(self, 404, f"no earthquake with id {event!r}")
        return _json_text(self, doc)


@app.page("/api/dead-letters")
class DeadLetterListView(View):
    """Dead letters, most recent first. Filters: kind, since, redriven=true|false;
    limit (1-1000) and cursor. Payloads are shown as a short preview."""

    @json_errors
    async def get(self, request: Request) -> Response:
        query: DeadLetterQuery = parse_dead_letter_query(request.query)
        page = await asyncio.to_thread(read_db, list_dead_letters, query)
        return self.json(page.as_dict())


@app.page("/api/lag")
class LagView(View):
    """Consumer lag of the app's group per topic and partition (cached a few s)."""

    @json_errors
    async def get(self, request: Request) -> Response:
        report = await lag_reader(settings).report()
        set_lag_report(report)
        return self.json(report.as_dict())


def check_bearer(header: str | None, settings: Settings) -> str | None:
    """None when ``header`` carries the configured redrive token, else why not."""
    token = settings.redrive_token.get_secret_value()
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "missing bearer token: send Authorization: Bearer <REDRIVE_TOKEN>"
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        return "invalid token"
    return None


def parse_redrive_body(body: bytes) -> tuple[RedriveSelection, bool]:
    """The selection and dry-run flag of a redrive request; raises BadRequest."""
    if len(body) > MAX_REDRIVE_BODY:
        raise BadRequest("request body is too large")
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(data) - set(REDRIVE_KEYS))
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(REDRIVE_KEYS)}"
        )
    kind = data.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise BadRequest("kind must be a string")
    since = data.get("since")
    if since is not None and not isinstance(since, str):
        raise BadRequest("since must be an ISO-8601 string")
    ids = data.get("ids", [])
    if not isinstance(ids, list) or len(ids) > MAX_REDRIVE_IDS:
        raise BadRequest(f"ids must be a list of at most {MAX_REDRIVE_IDS} numbers")
    if any(
        not isinstance(i, int)
        or isinstance(i, bool)
        or not 1 <= i <= MAX_DEAD_LETTER_ID
        for i in ids
    ):
        raise BadRequest("ids must be positive whole numbers")
    limit = data.get("limit", 10_000)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise BadRequest("limit must be a whole number")
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("dry_run must be true or false")
    selection = RedriveSelection(
        kind=parse_kind(kind) if kind is not None else None,
        since=parse_time("since", since) if since is not None else None,
        ids=tuple(dict.fromkeys(ids)),
        limit=limit,
    )
    return selection, dry_run


@app.page("/api/dead-letters/redrive")
class RedriveView(View):
    """POST a selection ({"kind", "since", "ids", "limit", "dry_run"}) to send those
    dead letters' original bytes back to the raw topic. Needs
    ``Authorization: Bearer <REDRIVE_TOKEN>``; off when no token is configured."""

    @json_errors
    async def post(self, request: Request) -> Response:
        if not settings.redrive_token:
            return _error(
                self,
                403,
                "redrive is disabled on this worker: set REDRIVE_TOKEN to enable it",
            )
        problem = check_bearer(request.headers.get("Authorization"), settings)
        if problem is not None:
            response = _error(self, 401, problem)
            response.headers["WWW-Authenticate"] = 'Bearer realm="streamapp-redrive"'
            return response
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequest("request body is too large") from None
        selection, dry_run = parse_redrive_body(body)
        try:
            result = await redrive(
                get_engine(settings), settings, selection, dry_run=dry_run
            )
        except (sqlalchemy.exc.SQLAlchemyError, psycopg2.Error):
            raise
        except Exception as exc:
            log.warning("redrive failed: %s: %s", type(exc).__name__, exc)
            return _error(
                self,
                503,
                "Kafka did not take the messages; nothing was marked redriven",
            )
        if result.refused:
            return self.json(
                {
                    "error": "none of the named dead letters can be redriven",
                    "status": 409,
                    **result.as_dict(),
                },
                status=409,
            )
        return self.json(result.as_dict())
