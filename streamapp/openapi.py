"""The OpenAPI 3.1 document of the worker's web API, served at ``/api/openapi.json``.

The document is built from the code's own constants where they exist: the
earthquake columns (``QUAKE_API_COLUMNS`` and the ``Quake`` record's types), the
page limits, the dead-letter error kinds, the redrive body's keys, the pipeline
counters, the alert rules and the ``Alert`` record's types. A schema-driven fuzz
test (``tests/e2e/test_openapi.py``) calls every operation of it against a real
worker and checks statuses, content types and bodies against it.

Example::

    >>> from streamapp.openapi import openapi_document
    >>> doc = openapi_document()
    >>> doc["openapi"], sorted(doc["paths"])[:2]
    ('3.1.0', ['/', '/api/activity'])
"""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime, timedelta
from typing import Any

import faust

from models.alerts import RULES, Alert
from models.records import Quake
from streamapp import __version__
from streamapp.activity.query import ACTIVITY_ORDERS, ACTIVITY_WINDOWS, DEFAULT_SINCE
from streamapp.alerts.queries import ALERT_API_COLUMNS
from streamapp.backfill.progress import RunState
from streamapp.backfill.status import RUNS_SHOWN
from streamapp.faust_ext.records import record_fields
from streamapp.queries import (
    API_DEFAULT_LIMIT,
    API_MAX_LIMIT,
    DEAD_LETTER_API_COLUMNS,
    ERROR_KINDS,
    QUAKE_API_COLUMNS,
)
from streamapp.stats import COUNTERS

__all__ = [
    "DELIVERY_STATUSES",
    "OPENAPI_VERSION",
    "openapi_document",
]

#: The OpenAPI version of the document.
OPENAPI_VERSION = "3.1.0"
#: Delivery states of an alert's webhook delivery.
DELIVERY_STATUSES = ("off", "pending", "delivered", "failing")

# The shapes of the path and query values the parsers accept (streamapp.queries and
# models.regions keep theirs private; these are the same expressions).
_EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_CELL_PATTERN = r"^\d{2}[NS]\d{3}[EW]$"
_BBOX_EXAMPLE = "-125,32,-114,42"
#: Largest ``limit`` of a redrive selection (``streamapp.queries.RedriveSelection``).
_REDRIVE_MAX_LIMIT = 100_000
_REDRIVE_DEFAULT_LIMIT = 10_000

_JSON = "application/json"
_TIME_EXAMPLE = "2014-04-14T06:00:00Z"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _json_type(hint: Any) -> dict[str, Any]:
    if hint is datetime:
        return {"type": "string", "format": "date-time"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    raise TypeError(f"no JSON type for {hint!r}")


def _record_types(record: type[faust.Record]) -> dict[str, dict[str, Any]]:
    """Each field of a record as a JSON schema (``X | None``: nullable)."""
    hints = typing.get_type_hints(record)
    out: dict[str, dict[str, Any]] = {}
    for name in record_fields(record):
        hint = hints[name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = _nullable(_json_type(args[0])) if args else _json_type(hint)
    return out


def _object(
    properties: dict[str, Any],
    *,
    required: typing.Iterable[str] | None = None,
    description: str | None = None,
    additional: bool | dict[str, Any] = False,
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": additional,
    }
    if description:
        schema["description"] = description
    return schema


def _time(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "description": description}


def _int(description: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", **extra}
    if description:
        out["description"] = description
    return out


# --------------------------------------------------------------------------- schemas
def _earthquake() -> dict[str, Any]:
    fields = _record_types(Quake)
    lineage = {
        "kafka_partition": _int("clean-topic partition of this revision", minimum=0),
        "kafka_offset": _int("clean-topic offset of this revision", minimum=0),
        "ingested_at": _time("when the row was written"),
    }
    props = {name: fields.get(name) or lineage[name] for name in QUAKE_API_COLUMNS}
    props["id"] = {**props["id"], "pattern": _EVENT_ID_PATTERN}
    return _object(
        props,
        description=(
            "One row of the earthquakes table (times UTC, ISO-8601 with "
            "milliseconds and Z)."
        ),
    )


def _dead_letter() -> dict[str, Any]:
    types: dict[str, dict[str, Any]] = {
        "id": _int(minimum=1),
        "source_topic": {"type": "string"},
        "source_partition": _int(),
        "source_offset": _int(),
        "key": {
            "type": ["string", "null"],
            "description": "the original key, decoded as UTF-8 with replacements",
        },
        "error_kind": {"type": "string", "enum": list(ERROR_KINDS)},
        "error_message": {"type": ["string", "null"]},
        "error_detail": {
            "type": ["object", "null"],
            "description": "details, e.g. the per-field validation messages",
        },
        "failed_at": _nullable(_time("when validation or the sink refused it")),
        "stored_at": _time("when the row was written"),
        "redriven_at": _nullable(_time("when it was sent back (null: never)")),
    }
    props = {name: types[name] for name in DEAD_LETTER_API_COLUMNS}
    props["payload_size"] = _int("bytes of the original payload", minimum=0)
    props["payload_preview"] = {
        "type": "string",
        "description": "the payload's first bytes, decoded as UTF-8 with replacements",
    }
    return _object(props, description="One message the pipeline could not store.")


def _page(item: str, description: str) -> dict[str, Any]:
    return _object(
        {
            "items": {"type": "array", "items": _ref(item)},
            "count": _int("items on this page", minimum=0),
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as cursor for the next page; null on the last",
            },
        },
        description=description,
    )


def _lag_report() -> dict[str, Any]:
    partition = _object(
        {
            "partition": _int(minimum=0),
            "end_offset": _int(minimum=0),
            "committed_offset": {
                "type": ["integer", "null"],
                "description": "null: the group never committed there",
            },
            "lag": _int(minimum=0),
        }
    )
    topic = _object(
        {
            "lag": _int(minimum=0),
            "partitions": {"type": "array", "items": partition},
        }
    )
    return _object(
        {
            "group": {"type": "string", "description": "the consumer group (APP_ID)"},
            "total_lag": _int(minimum=0),
            "topics": {"type": "object", "additionalProperties": topic},
            "checked_at": {"type": "number", "description": "Unix time of the query"},
            "error": {
                "type": ["string", "null"],
                "description": "why the lag is unknown (Kafka did not answer)",
            },
        },
        description="Consumer lag of the app's group per topic and partition.",
    )


def _stats() -> dict[str, Any]:
    props: dict[str, Any] = {
        name: _int(meaning, minimum=0) for name, meaning in COUNTERS.items()
    }
    props["invalid_by_kind"] = {
        "type": "object",
        "additionalProperties": _int(minimum=0),
        "description": "invalid raw messages by error kind",
    }
    props["last_fetch_at"] = _nullable(_time("when the source was last polled"))
    props["last_fetch_result"] = {"type": ["string", "null"]}
    props["uptime_seconds"] = {"type": "number", "minimum": 0}
    props["backfill"] = {
        "anyOf": [_ref("Backfill"), {"type": "null"}],
        "description": "the latest backfill runs (null: no backfill ever ran)",
    }
    return _object(
        props,
        description="The pipeline counters of this worker (the ones it logs).",
    )


def _backfill() -> dict[str, Any]:
    hints = typing.get_type_hints(RunState)
    props: dict[str, Any] = {}
    for item in dataclasses.fields(RunState):
        hint = hints[item.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if type(None) in typing.get_args(hint) else hint
        if typing.get_origin(base) is tuple:
            schema: dict[str, Any] = {"type": "array", "items": {"type": "number"}}
        else:
            schema = _json_type(base)
        props[item.name] = _nullable(schema) if base is not hint else schema
    props["fraction_done"] = {"type": "number", "minimum": 0, "maximum": 1}
    props["state"] = {"type": "string", "enum": ["running", "failed", "finished"]}
    run = _object(props, description="One backfill run (its progress row).")
    return _object(
        {
            "latest": run,
            "runs": {"type": "array", "items": run, "maxItems": RUNS_SHOWN},
            "read_at": _nullable(_time("when the progress table was read")),
        },
        description="Backfill progress, most recent run first.",
    )


def _health() -> dict[str, Any]:
    service = {
        "type": "string",
        "description": "ok, or the error of the failed check",
    }
    return _object(
        {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "kafka": service,
            "postgres": service,
            "failed": {
                "type": "array",
                "items": {"type": "string", "enum": ["kafka", "postgres"]},
            },
        }
    )


def _redrive_request() -> dict[str, Any]:
    # Imported late: streamapp.views.api builds the Faust app.
    from streamapp.views.api import MAX_DEAD_LETTER_ID, MAX_REDRIVE_IDS, REDRIVE_KEYS

    types: dict[str, dict[str, Any]] = {
        "kind": {"type": "string", "enum": list(ERROR_KINDS)},
        "since": {
            "type": "string",
            "description": "failed at or after (ISO-8601 date or date-time)",
            "examples": [_TIME_EXAMPLE],
        },
        "ids": {
            "type": "array",
            "items": _int(minimum=1, maximum=MAX_DEAD_LETTER_ID),
            "maxItems": MAX_REDRIVE_IDS,
            "description": "dead-letter ids",
        },
        "limit": _int(
            "the most letters to send",
            minimum=1,
            maximum=_REDRIVE_MAX_LIMIT,
            default=_REDRIVE_DEFAULT_LIMIT,
        ),
        "dry_run": {
            "type": "boolean",
            "default": False,
            "description": "only list what would be sent",
        },
    }
    return _object(
        {name: types[name] for name in REDRIVE_KEYS},
        required=[],
        description=(
            "Which dead letters to send back: all given filters must match; at "
            "least one of kind, since and ids is needed."
        ),
    )


def _redrive_result() -> dict[str, Any]:
    preview = _object(
        {
            "id": _int(minimum=1),
            "source_topic": {"type": "string"},
            "source_partition": _int(),
            "source_offset": _int(),
            "error_kind": {"type": "string"},
            "error_message": {"type": ["string", "null"]},
            "payload_size": _int(minimum=0),
        }
    )
    ids = {"type": "array", "items": _int(minimum=1)}
    return _object(
        {
            "dry_run": {"type": "boolean"},
            "selection": _object(
                {
                    "kind": {"type": ["string", "null"]},
                    "since": {"type": ["string", "null"], "format": "date-time"},
                    "ids": ids,
                    "limit": _int(minimum=1),
                }
            ),
            "redriven": {**ids, "description": "ids sent (not in a dry run)"},
            "would_redrive": {
                "type": "array",
                "items": preview,
                "description": "what a dry run would send",
            },
            "already_redriven": {
                "type": "object",
                "additionalProperties": {"type": "string", "format": "date-time"},
                "description": "named ids redriven before: id -> redriven_at",
            },
            "not_redrivable": {
                **ids,
                "description": "named ids whose bytes were kept only in part",
            },
            "not_found": {**ids, "description": "named ids that do not exist"},
            "topics": {
                "type": "object",
                "additionalProperties": _int(minimum=0),
                "description": "letters sent per target topic",
            },
        },
        description="What a redrive did (or, in a dry run, would do).",
    )


def _redrive_refused() -> dict[str, Any]:
    result = _redrive_result()
    return _object(
        {
            "error": {"type": "string"},
            "status": {"const": 409},
            **result["properties"],
        },
        description="Ids were named and none of them can be redriven.",
    )


def _activity() -> dict[str, Any]:
    stamp = {"type": "string", "format": "date-time"}
    return _object(
        {
            "region": {"type": "string", "pattern": _CELL_PATTERN},
            "bounds": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 4,
                "maxItems": 4,
                "description": "[min_lat, min_lon, max_lat, max_lon] in degrees",
            },
            "window": {"type": "string", "enum": list(ACTIVITY_WINDOWS)},
            "window_start": stamp,
            "window_end": stamp,
            "count": _int("events in the window", minimum=0),
            "max_magnitude": {"type": ["number", "null"]},
            "energy_joules": {
                "type": "number",
                "minimum": 0,
                "description": "sum of 10**(1.5 M + 4.8) J over the events",
            },
            "min_depth_km": {"type": ["number", "null"]},
            "max_depth_km": {"type": ["number", "null"]},
            "updated_at": stamp,
        },
        description="Events of one 10x10 degree region cell in one time window.",
    )


def _activity_page() -> dict[str, Any]:
    return _object(
        {
            "window": {"type": "string", "enum": list(ACTIVITY_WINDOWS)},
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": ["string", "null"], "format": "date-time"},
            "order": {"type": "string", "enum": list(ACTIVITY_ORDERS)},
            "items": {"type": "array", "items": _ref("Activity")},
        }
    )


def _alert() -> dict[str, Any]:
    types = _record_types(Alert)
    types["rule"] = {**types["rule"], "enum": list(RULES)}
    types["region"] = {**types["region"], "pattern": _CELL_PATTERN}
    types["stored_at"] = _time("when the alert was stored")
    fields = {name: types[name] for name in ALERT_API_COLUMNS}
    fields["delivery"] = _object(
        {
            "status": {
                "type": "string",
                "enum": list(DELIVERY_STATUSES),
                "description": "off: no ALERT_WEBHOOK_URL",
            },
            "attempts": _int(minimum=0),
            "last_error": {"type": ["string", "null"]},
            "delivered_at": _nullable(_time("when the webhook took it")),
            "next_attempt_at": _nullable(_time("the next delivery round")),
        },
        description="The webhook delivery of the alert.",
    )
    return _object(fields, description="One alert (id = rule:subject), stored once.")


def _error() -> dict[str, Any]:
    return _object(
        {
            "error": {"type": "string", "description": "what is wrong, in one line"},
            "status": _int("the HTTP status"),
        },
        description="Every error of the API.",
    )


def _schemas() -> dict[str, Any]:
    return {
        "Earthquake": _earthquake(),
        "EarthquakePage": _page("Earthquake", "Earthquakes, newest first."),
        "DeadLetter": _dead_letter(),
        "DeadLetterPage": _page("DeadLetter", "Dead letters, newest first."),
        "LagReport": _lag_report(),
        "Stats": _stats(),
        "Backfill": _backfill(),
        "Health": _health(),
        "Activity": _activity(),
        "ActivityPage": _activity_page(),
        "Alert": _alert(),
        "AlertPage": _object(
            {
                "items": {"type": "array", "items": _ref("Alert")},
                "next_cursor": {"type": ["string", "null"]},
            },
            description="Alerts, newest detected_at first.",
        ),
        "RedriveRequest": _redrive_request(),
        "RedriveResult": _redrive_result(),
        "RedriveRefused": _redrive_refused(),
        "Error": _error(),
    }


# --------------------------------------------------------------------------- paths
def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


_BAD = _json("Error", "a bad parameter (the message names it and what is allowed)")
_DB_DOWN = _json("Error", "PostgreSQL is unavailable; try again later")


def _query(
    name: str, schema: dict[str, Any], description: str, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


def _when_param(name: str, description: str) -> dict[str, Any]:
    return _query(
        name,
        {"type": "string", "format": "date-time"},
        f"{description}; ISO-8601 date or date-time (no zone: UTC)",
        example=_TIME_EXAMPLE,
    )


def _limit_param() -> dict[str, Any]:
    return _query(
        "limit",
        {
            "type": "integer",
            "minimum": 1,
            "maximum": API_MAX_LIMIT,
            "default": API_DEFAULT_LIMIT,
        },
        f"rows per page, 1..{API_MAX_LIMIT}; more is a 400, not a clamp",
    )


def _cursor_param() -> dict[str, Any]:
    return _query(
        "cursor",
        {"type": "string"},
        "the next_cursor of the previous page (anything else is a 400)",
    )


def _region_param() -> dict[str, Any]:
    return _query(
        "region",
        {"type": "string", "pattern": _CELL_PATTERN},
        "a 10x10 degree cell named by its south-west corner, e.g. 30N130E",
    )


def _ago(span: timedelta) -> str:
    hours = int(span.total_seconds() // 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours > 24 else f"{hours} hours"


def _get(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    parameters: list[dict[str, Any]] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": responses,
    }
    if parameters:
        op["parameters"] = parameters
    if description:
        op["description"] = description
    return {"get": op}


def _html(operation_id: str, summary: str) -> dict[str, Any]:
    return _get(
        operation_id,
        summary,
        {
            "200": {
                "description": "the dashboard page (HTML; its script polls the API)",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
        tag="dashboard",
    )


def _paths() -> dict[str, Any]:
    quake_id = {
        "name": "event_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": _EVENT_ID_PATTERN},
        "description": "the USGS event id",
        "example": "usc000pjti",
    }
    number = {"type": "number", "minimum": -2, "maximum": 12}
    return {
        "/api/earthquakes": _get(
            "listEarthquakes",
            "Earthquakes, newest origin time first (keyset pagination)",
            {
                "200": _json("EarthquakePage", "one page of earthquakes"),
                "400": _BAD,
                "503": _DB_DOWN,
            },
            tag="earthquakes",
            parameters=[
                _when_param("since", "origin time at or after"),
                _when_param("until", "origin time before"),
                _query("min_magnitude", number, "magnitude at least (-2..12)"),
                _query("max_magnitude", number, "magnitude at most (-2..12)"),
                _query(
                    "bbox",
                    {"type": "string"},
                    "min_lon,min_lat,max_lon,max_lat in degrees; min_lon > max_lon "
                    "crosses the antimeridian",
                    example=_BBOX_EXAMPLE,
                ),
                _limit_param(),
                _cursor_param(),
            ],
        ),
        "/api/earthquakes/{event_id}": _get(
            "getEarthquake",
            "One earthquake by its USGS event id",
            {
                "200": _json("Earthquake", "the earthquake"),
                "400": _json("Error", "not a USGS event id"),
                "404": _json("Error", "no earthquake with this id"),
                "503": _DB_DOWN,
            },
            tag="earthquakes",
            parameters=[quake_id],
        ),
        "/api/dead-letters": _get(
            "listDeadLetters",
            "Dead letters, most recently stored first, with a payload preview",
            {
                "200": _json("DeadLetterPage", "one page of dead letters"),
                "400": _BAD,
                "503": _DB_DOWN,
            },
            tag="dead letters",
            parameters=[
                _query(
                    "kind",
                    {"type": "string", "enum": list(ERROR_KINDS)},
                    "only this error kind",
                ),
                _when_param("since", "failed at or after"),
                _query(
                    "redriven",
                    {"type": "string", "enum": ["true", "false"]},
                    "true: only redriven letters; false: only pending ones",
                ),
                _limit_param(),
                _cursor_param(),
            ],
        ),
        "/api/dead-letters/redrive": {
            "post": {
                "operationId": "redriveDeadLetters",
                "summary": "Send dead letters' original bytes back for reprocessing",
                "description": (
                    "Letters are marked redriven in the same transaction that "
                    "commits only after Kafka acknowledged every message: never "
                    "marked without being sent, never sent twice. Off (403) unless "
                    "the worker has REDRIVE_TOKEN."
                ),
                "tags": ["dead letters"],
                "security": [{"redriveToken": []}],
                "requestBody": {
                    "required": False,
                    "content": {_JSON: {"schema": _ref("RedriveRequest")}},
                },
                "responses": {
                    "200": _json("RedriveResult", "what was (or would be) sent"),
                    "400": _json("Error", "a bad body or selection"),
                    "401": {
                        **_json("Error", "missing or wrong bearer token"),
                        "headers": {
                            "WWW-Authenticate": {
                                "schema": {"type": "string"},
                                "description": 'Bearer realm="streamapp-redrive"',
                            }
                        },
                    },
                    "403": _json("Error", "redrive is off: no REDRIVE_TOKEN is set"),
                    "409": _json(
                        "RedriveRefused", "ids were named and none can be redriven"
                    ),
                    "503": _json(
                        "Error",
                        "PostgreSQL is unavailable, or Kafka did not take the "
                        "messages (nothing was marked; repeat the request)",
                    ),
                },
            }
        },
        "/api/lag": _get(
            "getLag",
            "Consumer lag of the app's group (cached 3 s; never joins the group)",
            {"200": _json("LagReport", "the lag, or why it is unknown (error)")},
            tag="operations",
        ),
        "/api/stats": _get(
            "getStats",
            "The pipeline counters of this worker",
            {"200": _json("Stats", "the counters")},
            tag="operations",
        ),
        "/api/activity": _get(
            "listActivity",
            "Events per 10x10 degree region cell and hour or day",
            {
                "200": _json("ActivityPage", "the windows"),
                "400": _BAD,
                "503": _DB_DOWN,
            },
            tag="activity",
            parameters=[
                _query(
                    "window",
                    {
                        "type": "string",
                        "enum": list(ACTIVITY_WINDOWS),
                        "default": ACTIVITY_WINDOWS[0],
                    },
                    "window length: 1h or 1d",
                ),
                _when_param(
                    "since",
                    "window_start at or after (default: "
                    + ", ".join(
                        f"{_ago(span)} ago for {name}"
                        for name, span in DEFAULT_SINCE.items()
                    )
                    + ")",
                ),
                _when_param("until", "window_start before"),
                _region_param(),
                _query(
                    "order",
                    {
                        "type": "string",
                        "enum": list(ACTIVITY_ORDERS),
                        "default": ACTIVITY_ORDERS[0],
                    },
                    "time: newest window first (then count); count: largest count "
                    "first (then newest)",
                ),
                _limit_param(),
            ],
        ),
        "/api/alerts": _get(
            "listAlerts",
            "Alerts, newest detected_at first, with their webhook delivery",
            {
                "200": _json("AlertPage", "one page of alerts"),
                "400": _BAD,
                "503": _DB_DOWN,
            },
            tag="alerts",
            parameters=[
                _when_param("since", "detected at or after"),
                _query(
                    "rule",
                    {"type": "string", "enum": list(RULES)},
                    "only this rule",
                ),
                _region_param(),
                _limit_param(),
                _cursor_param(),
            ],
        ),
        "/api/openapi.json": _get(
            "getOpenApi",
            "This document",
            {
                "200": {
                    "description": "the OpenAPI 3.1 document",
                    "content": {_JSON: {"schema": {"type": "object"}}},
                }
            },
            tag="operations",
        ),
        "/health": _get(
            "getHealth",
            "Whether Kafka and PostgreSQL answer",
            {
                "200": _json("Health", "both answer"),
                "503": _json("Health", "one failed: named in failed"),
            },
            tag="operations",
        ),
        "/metrics": _get(
            "getMetrics",
            "Prometheus text exposition of the worker's metrics",
            {
                "200": {
                    "description": "every streamapp and Faust metric",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
            tag="operations",
        ),
        "/": _html("getRoot", "The live dashboard"),
        "/dashboard/": _html("getDashboard", "The live dashboard"),
        "/dashboard": _get(
            "redirectDashboard",
            "Redirect to /dashboard/",
            {
                "301": {
                    "description": "moved permanently to /dashboard/",
                    "headers": {
                        "Location": {
                            "schema": {"type": "string", "const": "/dashboard/"}
                        }
                    },
                }
            },
            tag="dashboard",
        ),
    }


def openapi_document() -> dict[str, Any]:
    """A fresh OpenAPI 3.1 document of the worker's web API (a JSON-ready dict)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "streamapp",
            "version": __version__,
            "summary": "Earthquakes from the USGS feed through Kafka into PostgreSQL",
            "description": (
                "The read API of a streamapp worker: earthquakes, dead letters and "
                "their redrive, windowed activity per region, alerts, consumer lag "
                'and counters. Errors are JSON `{"error": str, "status": int}`; '
                "an unknown or repeated query parameter is a 400."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/", "description": "the worker that serves this"}],
        "tags": [
            {"name": name}
            for name in (
                "earthquakes",
                "dead letters",
                "activity",
                "alerts",
                "operations",
                "dashboard",
            )
        ],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "redriveToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the worker's REDRIVE_TOKEN",
                }
            },
        },
    }
