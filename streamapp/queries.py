"""Read queries of the web API: parameters, keyset pagination, redrive selection."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, RowMapping

from models.records import QUAKE_FIELDS
from models.regions import cell_bounds
from streamapp.db import qualified_text
from streamapp.exceptions import BadRequest

__all__ = [
    "API_DEFAULT_LIMIT",
    "API_MAX_LIMIT",
    "DEAD_LETTER_API_COLUMNS",
    "ERROR_KINDS",
    "QUAKE_API_COLUMNS",
    "ClaimedLetter",
    "DeadLetterQuery",
    "Page",
    "QuakeQuery",
    "RedriveSelection",
    "claim_dead_letters",
    "dead_letter_states",
    "decode_cursor",
    "encode_cursor",
    "get_earthquake",
    "jsonable",
    "list_dead_letters",
    "list_earthquakes",
    "parse_dead_letter_query",
    "parse_event_id",
    "parse_kind",
    "parse_limit",
    "parse_quake_query",
    "parse_region",
    "parse_time",
    "preview_redrive",
    "single_params",
]

#: Rows per page when the client does not say.
API_DEFAULT_LIMIT = 100
#: The hard cap on ``limit``: more is a 400, not a silent clamp.
API_MAX_LIMIT = 1000
#: How much of a dead letter's payload the list shows (bytes, decoded leniently).
PAYLOAD_PREVIEW_BYTES = 300
#: Every error kind a dead letter can have (validation kinds plus the sink's).
ERROR_KINDS = (
    "empty",
    "too_large",
    "not_utf8",
    "not_json",
    "too_deep",
    "not_object",
    "schema",
    "sink_rejected",
)

_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_MAX_PARAM_CHARS = 200

#: What the read API returns of an ``earthquakes`` row: the event, its clean-topic
#: lineage, ingest time.
QUAKE_API_COLUMNS: tuple[str, ...] = (
    *(name for name in QUAKE_FIELDS if name not in ("raw_partition", "raw_offset")),
    "kafka_partition",
    "kafka_offset",
    "ingested_at",
)

# Letters whose payload or key was kept only in part cannot be sent back as they were.
_REDRIVABLE = (
    "coalesce(error_detail -> '_payload' ->> 'truncated', 'false') <> 'true'"
    " AND coalesce(error_detail -> '_payload' ->> 'null', 'false') <> 'true'"
    " AND coalesce(error_detail -> '_key' ->> 'truncated', 'false') <> 'true'"
)


# --------------------------------------------------------------------------- params
def parse_time(name: str, raw: str) -> datetime:
    """An ISO-8601 date or date-time (naive means UTC), as an aware UTC datetime."""
    value = raw.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO-8601 date or time, e.g. 2014-04-14T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise BadRequest(f"{name} is out of range") from None


def _float(name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}")
    return value


def parse_region(raw: str) -> str:
    """A region cell name (``models.regions``) as given; raises BadRequest."""
    try:
        cell_bounds(raw)
    except ValueError:
        raise BadRequest(
            "region must be a region cell like 30N130E (10-degree grid, "
            "south-west corner)"
        ) from None
    return raw


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return API_DEFAULT_LIMIT
    if not raw.strip().isdigit():
        raise BadRequest(f"limit must be a whole number from 1 to {API_MAX_LIMIT}")
    value = int(raw)
    if not 1 <= value <= API_MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {API_MAX_LIMIT}")
    return value


def _bbox(raw: str) -> tuple[float, float, float, float]:
    parts = raw.split(",")
    if len(parts) != 4:
        raise BadRequest(
            "bbox must be min_lon,min_lat,max_lon,max_lat, e.g. bbox=-125,32,-114,42"
        )
    min_lon = _float("bbox min_lon", parts[0], -180, 180)
    min_lat = _float("bbox min_lat", parts[1], -90, 90)
    max_lon = _float("bbox max_lon", parts[2], -180, 180)
    max_lat = _float("bbox max_lat", parts[3], -90, 90)
    if min_lat > max_lat:
        raise BadRequest("bbox min_lat must not be greater than max_lat")
    # min_lon > max_lon is allowed: the box crosses the antimeridian.
    return min_lon, min_lat, max_lon, max_lat


def _show(raw: str) -> str:
    return json.dumps(raw[:40] + ("..." if len(raw) > 40 else ""))


def single_params(params: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, str]:
    """One string per parameter; unknown, repeated or oversized ones are a 400."""
    allowed = tuple(allowed)
    getall = getattr(params, "getall", None)
    out: dict[str, str] = {}
    for name in params:
        if name not in allowed:
            raise BadRequest(
                f"unknown parameter {_show(name)}; allowed: {', '.join(allowed)}"
            )
        values = getall(name) if getall is not None else [params[name]]
        if len(values) != 1:
            raise BadRequest(f"parameter {name} given more than once")
        value = str(values[0])
        if len(value) > _MAX_PARAM_CHARS:
            raise BadRequest(f"parameter {name} is too long")
        if "\x00" in value:
            raise BadRequest(f"parameter {name} contains a NUL character")
        out[name] = value
    return out


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(raw: str) -> list[Any]:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise BadRequest(
            "cursor is not valid; use next_cursor from a response"
        ) from None
    if not isinstance(values, list):
        raise BadRequest("cursor is not valid; use next_cursor from a response")
    return values


@dataclass(frozen=True)
class QuakeQuery:
    """Filters and page of ``/api/earthquakes`` (newest first)."""

    since: datetime | None = None
    until: datetime | None = None
    min_magnitude: float | None = None
    max_magnitude: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    limit: int = API_DEFAULT_LIMIT
    after: tuple[datetime, str] | None = None  # keyset: (time, id) of the last row


QUAKE_PARAMS = (
    "since",
    "until",
    "min_magnitude",
    "max_magnitude",
    "bbox",
    "limit",
    "cursor",
)


def parse_quake_query(params: Mapping[str, Any]) -> QuakeQuery:
    """Validate the query string of ``/api/earthquakes``; raises :class:`BadRequest`."""
    p = single_params(params, QUAKE_PARAMS)
    since = parse_time("since", p["since"]) if "since" in p else None
    until = parse_time("until", p["until"]) if "until" in p else None
    if since and until and since > until:
        raise BadRequest("since must not be later than until")
    min_mag = (
        _float("min_magnitude", p["min_magnitude"], -2, 12)
        if "min_magnitude" in p
        else None
    )
    max_mag = (
        _float("max_magnitude", p["max_magnitude"], -2, 12)
        if "max_magnitude" in p
        else None
    )
    if min_mag is not None and max_mag is not None and min_mag > max_mag:
        raise BadRequest("min_magnitude must not be greater than max_magnitude")
    after: tuple[datetime, str] | None = None
    if "cursor" in p:
        values = decode_cursor(p["cursor"])
        if len(values) != 2 or not all(isinstance(v, str) for v in values):
            raise BadRequest("cursor is not valid; use next_cursor from a response")
        try:
            after = (parse_time("cursor", values[0]), parse_event_id(values[1]))
        except BadRequest:
            raise BadRequest(
                "cursor is not valid; use next_cursor from a response"
            ) from None
    return QuakeQuery(
        since=since,
        until=until,
        min_magnitude=min_mag,
        max_magnitude=max_mag,
        bbox=_bbox(p["bbox"]) if "bbox" in p else None,
        limit=parse_limit(p.get("limit")),
        after=after,
    )


@dataclass(frozen=True)
class DeadLetterQuery:
    """Filters and page of ``/api/dead-letters`` (newest first)."""

    kind: str | None = None
    since: datetime | None = None
    redriven: bool | None = None
    limit: int = API_DEFAULT_LIMIT
    before_id: int | None = None  # keyset: id of the last row of the previous page


DEAD_LETTER_PARAMS = ("kind", "since", "redriven", "limit", "cursor")


def parse_kind(raw: str) -> str:
    """An error kind, one of :data:`ERROR_KINDS`."""
    if raw not in ERROR_KINDS:
        raise BadRequest(f"kind must be one of: {', '.join(ERROR_KINDS)}")
    return raw


def parse_dead_letter_query(params: Mapping[str, Any]) -> DeadLetterQuery:
    """Validate the query string of ``/api/dead-letters`` (or raise BadRequest)."""
    p = single_params(params, DEAD_LETTER_PARAMS)
    redriven: bool | None = None
    if "redriven" in p:
        flag = p["redriven"].lower()
        if flag not in ("true", "false"):
            raise BadRequest("redriven must be true or false")
        redriven = flag == "true"
    before_id: int | None = None
    if "cursor" in p:
        values = decode_cursor(p["cursor"])
        if len(values) != 1 or not isinstance(values[0], int) or values[0] < 1:
            raise BadRequest("cursor is not valid; use next_cursor from a response")
        before_id = int(values[0])
    return DeadLetterQuery(
        kind=parse_kind(p["kind"]) if "kind" in p else None,
        since=parse_time("since", p["since"]) if "since" in p else None,
        redriven=redriven,
        limit=parse_limit(p.get("limit")),
        before_id=before_id,
    )


def parse_event_id(raw: str) -> str:
    """An event id as USGS spells them (letters, digits, ``._:-``; at most 128)."""
    if not _EVENT_ID.match(raw):
        raise BadRequest(
            "event id must be 1-128 letters, digits or . _ : - (e.g. ak0144m5b4r6)"
        )
    return raw


# --------------------------------------------------------------------------- SQL
@dataclass
class Page:
    """One page of results and the cursor of the next (None: this was the last)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None
    #: The items as JSON texts built by PostgreSQL (then ``items`` is unused).
    docs: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        items = (
            [json.loads(d) for d in self.docs] if self.docs is not None else self.items
        )
        return {"items": items, "count": len(items), "next_cursor": self.next_cursor}

    def to_json(self) -> str:
        """The page as a JSON text, without decoding pre-built items."""
        if self.docs is None:
            return json.dumps(self.as_dict(), separators=(",", ":"))
        return (
            '{"items":['
            + ",".join(self.docs)
            + f'],"count":{len(self.docs)},"next_cursor":'
            + json.dumps(self.next_cursor)
            + "}"
        )


def jsonable(value: Any) -> Any:
    """A JSON-ready form of a database value (UTC ISO times, floats, text)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, memoryview | bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value


QUAKE_TIME_COLUMNS = frozenset({"time", "updated", "fetched_at", "ingested_at"})


def _quake_json() -> str:
    """SQL building one earthquake as a JSON text (UTC ISO-8601 times, ms, Z).

    PostgreSQL encodes the rows: far cheaper than converting 26 values per row in
    Python while the event loop waits for the GIL.
    """
    fields = []
    for name in QUAKE_API_COLUMNS:
        value = (
            f"to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            if name in QUAKE_TIME_COLUMNS
            else name
        )
        fields.append(f"'{name}', {value}")
    return f"json_build_object({', '.join(fields)})::text"


QUAKE_JSON = _quake_json()


def list_earthquakes(conn: Connection, schema: str, q: QuakeQuery) -> Page:
    """The earthquakes matching ``q``, newest origin time first."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": q.limit + 1}
    if q.since is not None:
        where.append("time >= :since")
        params["since"] = q.since
    if q.until is not None:
        where.append("time < :until")
        params["until"] = q.until
    if q.min_magnitude is not None:
        where.append("magnitude >= :min_mag")
        params["min_mag"] = q.min_magnitude
    if q.max_magnitude is not None:
        where.append("magnitude <= :max_mag")
        params["max_mag"] = q.max_magnitude
    if q.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = q.bbox
        where.append("latitude BETWEEN :min_lat AND :max_lat")
        if min_lon <= max_lon:
            where.append("longitude BETWEEN :min_lon AND :max_lon")
        else:
            where.append("(longitude >= :min_lon OR longitude <= :max_lon)")
        params.update(
            min_lon=min_lon, min_lat=min_lat, max_lon=max_lon, max_lat=max_lat
        )
    if q.after is not None:
        where.append("(time, id) < (:after_time, :after_id)")
        params["after_time"], params["after_id"] = q.after
    table = qualified_text(schema, "earthquakes")
    sql = (
        f"SELECT time, id, {QUAKE_JSON} AS doc FROM {table}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY time DESC, id DESC LIMIT :limit"
    )
    rows = conn.execute(text(sql), params).mappings().all()
    page = Page(docs=[str(r["doc"]) for r in rows[: q.limit]])
    if len(rows) > q.limit:
        last = rows[q.limit - 1]
        page.next_cursor = encode_cursor([jsonable(last["time"]), last["id"]])
    return page


def get_earthquake(conn: Connection, schema: str, event_id: str) -> str | None:
    """One earthquake by id as a JSON text, or None."""
    sql = (
        f"SELECT {QUAKE_JSON} AS doc FROM {qualified_text(schema, 'earthquakes')}"
        " WHERE id = :id"
    )
    row = conn.execute(text(sql), {"id": event_id}).mappings().first()
    return str(row["doc"]) if row is not None else None


#: What the read API returns of a ``dead_letters`` row (besides the payload's size
#: and preview).
DEAD_LETTER_API_COLUMNS: tuple[str, ...] = (
    "id",
    "source_topic",
    "source_partition",
    "source_offset",
    "key",
    "error_kind",
    "error_message",
    "error_detail",
    "failed_at",
    "stored_at",
    "redriven_at",
)


def _dead_letter(row: RowMapping) -> dict[str, Any]:
    out = {name: jsonable(row[name]) for name in DEAD_LETTER_API_COLUMNS}
    out["payload_size"] = int(row["payload_size"])
    out["payload_preview"] = jsonable(row["payload_preview"])
    return out


def list_dead_letters(conn: Connection, schema: str, q: DeadLetterQuery) -> Page:
    """The dead letters matching ``q``, most recently stored first."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": q.limit + 1, "preview": PAYLOAD_PREVIEW_BYTES}
    if q.kind is not None:
        where.append("error_kind = :kind")
        params["kind"] = q.kind
    if q.since is not None:
        where.append("coalesce(failed_at, stored_at) >= :since")
        params["since"] = q.since
    if q.redriven is not None:
        where.append("redriven_at IS NOT NULL" if q.redriven else "redriven_at IS NULL")
    if q.before_id is not None:
        where.append("id < :before_id")
        params["before_id"] = q.before_id
    sql = (
        f"SELECT {', '.join(DEAD_LETTER_API_COLUMNS)},"
        " octet_length(payload) AS payload_size,"
        " substring(payload from 1 for :preview) AS payload_preview"
        f" FROM {qualified_text(schema, 'dead_letters')}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY id DESC LIMIT :limit"
    )
    rows = conn.execute(text(sql), params).mappings().all()
    page = Page(items=[_dead_letter(r) for r in rows[: q.limit]])
    if len(rows) > q.limit:
        page.next_cursor = encode_cursor([int(rows[q.limit - 1]["id"])])
    return page


# --------------------------------------------------------------------------- redrive
@dataclass(frozen=True)
class RedriveSelection:
    """Which dead letters to redrive: all filters must match; at least one is given."""

    kind: str | None = None
    since: datetime | None = None
    ids: tuple[int, ...] = ()
    limit: int = 10_000

    def __post_init__(self) -> None:
        if self.kind is None and self.since is None and not self.ids:
            raise BadRequest("select dead letters by kind, since and/or ids")
        if self.kind is not None:
            parse_kind(self.kind)
        if any(
            not isinstance(i, int) or isinstance(i, bool) or i < 1 for i in self.ids
        ):
            raise BadRequest("ids must be positive whole numbers")
        if not 1 <= self.limit <= 100_000:
            raise BadRequest("limit must be a whole number from 1 to 100000")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "since": jsonable(self.since) if self.since else None,
            "ids": list(self.ids),
            "limit": self.limit,
        }


def _redrive_where(sel: RedriveSelection) -> tuple[list[str], dict[str, Any]]:
    where = ["redriven_at IS NULL", _REDRIVABLE]
    params: dict[str, Any] = {"limit": sel.limit}
    if sel.kind is not None:
        where.append("error_kind = :kind")
        params["kind"] = sel.kind
    if sel.since is not None:
        where.append("coalesce(failed_at, stored_at) >= :since")
        params["since"] = sel.since
    if sel.ids:
        where.append("id = ANY(:ids)")
        params["ids"] = list(sel.ids)
    return where, params


def preview_redrive(
    conn: Connection, schema: str, sel: RedriveSelection
) -> list[dict[str, Any]]:
    """The dead letters a redrive of ``sel`` would send now (nothing is changed)."""
    where, params = _redrive_where(sel)
    sql = (
        "SELECT id, source_topic, source_partition, source_offset, error_kind,"
        " error_message, octet_length(payload) AS payload_size"
        f" FROM {qualified_text(schema, 'dead_letters')} WHERE {' AND '.join(where)}"
        " ORDER BY id LIMIT :limit"
    )
    return [
        {k: jsonable(v) for k, v in row.items()}
        for row in conn.execute(text(sql), params).mappings().all()
    ]


@dataclass(frozen=True)
class ClaimedLetter:
    """A dead letter marked redriven in the current transaction, with its bytes."""

    id: int
    source_topic: str
    error_kind: str
    key: bytes | None
    payload: bytes


def claim_dead_letters(
    conn: Connection, schema: str, sel: RedriveSelection
) -> list[ClaimedLetter]:
    """Mark the selected, not yet redriven letters redriven and return their bytes.

    Runs inside the caller's transaction: the rows stay locked until it commits
    (after the messages are in Kafka) or rolls back (the send failed). A concurrent
    redrive waits for the lock and then finds ``redriven_at`` set, so no letter is
    ever sent twice; ``SKIP LOCKED`` lets it skip rows being redriven right now.
    """
    where, params = _redrive_where(sel)
    table = qualified_text(schema, "dead_letters")
    sql = (
        f"UPDATE {table} SET redriven_at = now()"
        f" WHERE id IN (SELECT id FROM {table} WHERE {' AND '.join(where)}"
        " ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)"
        " AND redriven_at IS NULL"
        " RETURNING id, source_topic, error_kind, key, payload"
    )
    rows = conn.execute(text(sql), params).mappings().all()
    letters = [
        ClaimedLetter(
            id=int(r["id"]),
            source_topic=str(r["source_topic"]),
            error_kind=str(r["error_kind"]),
            key=bytes(r["key"]) if r["key"] is not None else None,
            payload=bytes(r["payload"]),
        )
        for r in rows
    ]
    return sorted(letters, key=lambda letter: letter.id)


def dead_letter_states(
    conn: Connection, schema: str, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """``id -> {redriven_at, redrivable}`` for the ids that exist."""
    if not ids:
        return {}
    sql = (
        f"SELECT id, redriven_at, ({_REDRIVABLE}) AS redrivable"
        f" FROM {qualified_text(schema, 'dead_letters')} WHERE id = ANY(:ids)"
    )
    rows = conn.execute(text(sql), {"ids": list(ids)}).mappings().all()
    return {
        int(r["id"]): {
            "redriven_at": jsonable(r["redriven_at"]),
            "redrivable": bool(r["redrivable"]),
        }
        for r in rows
    }
