"""Batched PostgreSQL sinks: earthquake upserts and dead letters, retried, bisected."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Literal

from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor
from psycopg2.extras import Json, execute_values
from sqlalchemy.engine import Engine

from models.records import QUAKE_FIELDS
from streamapp.db import get_engine, qualified, transaction
from streamapp.exceptions import PermanentSinkError, TransientSinkError
from streamapp.settings import Settings
from streamapp.stats import stats

__all__ = [
    "DEAD_LETTER_COLUMNS",
    "QUAKE_COLUMNS",
    "DeadLetterSink",
    "Item",
    "QuakeSink",
    "Rejected",
    "Sink",
    "backoff_delay",
    "dead_letter_row",
    "dedupe_latest",
    "quake_row",
    "quake_row_from_json",
]

log = logging.getLogger(__name__)

_json_loads: Callable[[bytes], Any] = json.loads
try:  # orjson decodes the clean topic's JSON about twice as fast; optional
    from orjson import loads as _orjson_loads

    _json_loads = _orjson_loads
except ImportError:  # pragma: no cover - the standard library does the same job
    pass

#: Columns of ``earthquakes`` written by the sink, in statement order (``ingested_at``
#: is the database's own ``now()``).
QUAKE_COLUMNS: tuple[str, ...] = (*QUAKE_FIELDS, "kafka_partition", "kafka_offset")

#: Columns of ``dead_letters`` written by the sink, in statement order.
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "source_topic",
    "source_partition",
    "source_offset",
    "key",
    "payload",
    "error_kind",
    "error_message",
    "error_detail",
    "failed_at",
)

#: Largest payload bytes sent in one INSERT of dead letters (a batch may hold
#: multi-megabyte payloads; they are split into statements of at most this much).
DEAD_LETTER_PAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Item:
    """One row for a sink: column values, plus an opaque ``ref`` back to its source
    (the Kafka event) that the sink never looks at."""

    row: Mapping[str, Any]
    ref: Any = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row the database refused for good, with the database's reason."""

    item: Item
    error: str
    sqlstate: str | None = None


def backoff_delay(attempt: int, minimum: float = 0.5, maximum: float = 10.0) -> float:
    """Delay before retry ``attempt`` (1, 2, ...): doubling from ``minimum``, capped
    at ``maximum``, with jitter in [50 %, 100 %] so workers do not retry in step."""
    base = min(maximum, minimum * (2 ** min(max(attempt - 1, 0), 32)))
    return base * (0.5 + random.random() / 2)


class Sink(ABC):
    """A batching sink in the style of Quix Streams' ``BatchingSink``.

    ``add()`` buffers items; ``await flush()`` writes them with :meth:`write_batch`
    (blocking, run on the sink's own single worker thread so the event loop keeps
    serving heartbeats and timers) and returns the rows the database rejected.

    * :class:`TransientSinkError`: the SAME batch is retried in place with capped
      exponential backoff, for as long as the worker runs (cancel the task to stop);
      nothing is skipped, the caller simply waits.
    * :class:`PermanentSinkError`: the batch is bisected until every row the
      database refuses is isolated; all other rows are written, the refused ones
      are returned as :class:`Rejected` for the caller to dead-letter.

    The buffer is cleared in ``finally``: whatever happens, the next ``flush()``
    starts empty (items of a failed flush are the caller's to redeliver: it has not
    acked them).
    """

    #: Short name for logs and the worker thread.
    name: ClassVar[str] = "sink"

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        executor: ThreadPoolExecutor | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{self.name}-db"
        )
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._batch: list[Item] = []
        #: Transient failures retried over the sink's lifetime.
        self.retries = 0

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (the process-wide one of the settings by default)."""
        if self._engine is None:
            self._engine = get_engine(self.settings)
        return self._engine

    def add(self, item: Item) -> None:
        """Buffer one item for the next :meth:`flush`."""
        self._batch.append(item)

    def __len__(self) -> int:
        return len(self._batch)

    async def flush(self) -> list[Rejected]:
        """Write every buffered item; return those the database refused for good."""
        items = list(self._batch)
        try:
            if not items:
                return []
            return await self._write_isolating(items)
        finally:
            self._batch.clear()

    @abstractmethod
    def write_batch(self, items: Sequence[Item]) -> None:
        """Write ``items`` in ONE transaction (blocking; runs in a worker thread).

        Raises :class:`TransientSinkError` or :class:`PermanentSinkError` only.
        """

    def close(self) -> None:
        """Release the worker thread (the engine is shared and stays open)."""
        if self._own_executor:
            self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ internals

    async def _run(self, items: Sequence[Item]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.write_batch, items)

    async def _write_retrying(self, items: Sequence[Item]) -> None:
        """Write ``items``, retrying transient errors in place; raises only
        :class:`PermanentSinkError` (or ``CancelledError`` when the worker stops)."""
        attempt = 0
        while True:
            try:
                await self._run(items)
            except TransientSinkError as exc:
                attempt += 1
                self.retries += 1
                stats.incr("sink_retries")
                delay = backoff_delay(attempt, self.min_backoff, self.max_backoff)
                log.warning(
                    "%s: %s; retrying the same %d row(s) in %.1fs (attempt %d)",
                    self.name,
                    exc,
                    len(items),
                    delay,
                    attempt,
                )
                await self._sleep(delay)
                continue
            if attempt:
                log.info(
                    "%s: database write succeeded after %d retr%s",
                    self.name,
                    attempt,
                    "y" if attempt == 1 else "ies",
                )
            return

    async def _write_isolating(self, items: Sequence[Item]) -> list[Rejected]:
        """Write ``items``; on a permanent error, bisect to isolate refused rows."""
        try:
            await self._write_retrying(items)
        except PermanentSinkError as exc:
            if len(items) == 1:
                sqlstate = getattr(exc, "sqlstate", None)
                reason = getattr(exc, "reason", None) or str(exc)
                log.warning("%s: row rejected by the database: %s", self.name, exc)
                return [Rejected(items[0], reason, sqlstate)]
            middle = len(items) // 2
            left = await self._write_isolating(items[:middle])
            right = await self._write_isolating(items[middle:])
            return left + right
        return []


# ---------------------------------------------------------------------- earthquakes


def quake_row(quake: Any, *, partition: int, offset: int) -> dict[str, Any]:
    """The ``earthquakes`` row of a ``models.records.Quake`` read from the clean
    topic at ``partition``/``offset`` (the lineage columns)."""
    row = dict(quake.to_row())
    row["kafka_partition"] = partition
    row["kafka_offset"] = offset
    return row


#: Columns a Quake's JSON carries (everything but the lineage set by the sink).
_QUAKE_JSON_FIELDS = QUAKE_COLUMNS[:-2]
_SCALARS = (str, int, float, bool, type(None))


def quake_row_from_json(
    data: bytes, *, partition: int, offset: int
) -> dict[str, Any] | None:
    """The ``earthquakes`` row of a clean-topic value, straight from its JSON.

    The fast path of the sink (``json.loads`` is ~20x cheaper than building a
    ``Quake`` record): a value produced by ``Quake.dumps()`` maps field by field to
    the columns, timestamps stay ISO-8601 text that PostgreSQL parses exactly as
    it would the datetimes. Returns ``None`` when the value does not have Quake's
    shape (not a JSON object, a required field missing or mistyped, a nested
    value): the caller then decodes it with ``Quake.loads``, the authority, which
    either coerces it or fails (a dead letter).
    """
    try:
        obj = _json_loads(data)
    except ValueError:  # JSONDecodeError (both libraries), UnicodeDecodeError
        return None
    if not isinstance(obj, dict):
        return None
    for name in ("id", "time", "updated"):
        text = obj.get(name)
        if not isinstance(text, str) or not text:
            return None
    for name in ("longitude", "latitude", "depth"):
        number = obj.get(name)
        if not isinstance(number, int | float) or isinstance(number, bool):
            return None
    row = {name: obj.get(name) for name in _QUAKE_JSON_FIELDS}
    for value in row.values():
        if not isinstance(value, _SCALARS):
            return None
    row["kafka_partition"] = partition
    row["kafka_offset"] = offset
    return row


def _instant(value: Any) -> float:
    """A comparable number for an ``updated`` value (datetime, ISO text or epoch)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return -math.inf
    return -math.inf


def _rank(row: Mapping[str, Any]) -> tuple[float, int]:
    return (_instant(row.get("updated")), int(row.get("kafka_offset") or 0))


def dedupe_latest(items: Iterable[Item]) -> list[Item]:
    """One item per ``id``: the largest ``updated`` wins, then the later Kafka
    offset. Sorted by id, so concurrent writers lock rows in the same order.

    A multi-row ``ON CONFLICT DO UPDATE`` must not touch one row twice ("command
    cannot affect row a second time"), so a batch must never repeat an id.
    """
    best: dict[Any, Item] = {}
    for item in items:
        key = item.row.get("id")
        seen = best.get(key)
        if seen is None or _rank(item.row) >= _rank(seen.row):
            best[key] = item
    try:
        order = sorted(best)
    except TypeError:  # ids of mixed types: the database will judge them
        order = sorted(best, key=lambda k: (k is None, str(k)))
    return [best[k] for k in order]


def _quake_values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    values = [row.get(column) for column in QUAKE_COLUMNS]
    tsunami_index = QUAKE_COLUMNS.index("tsunami")
    tsunami = values[tsunami_index]
    if tsunami is not None and not isinstance(tsunami, bool):
        values[tsunami_index] = bool(tsunami)
    return tuple(values)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_str(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _copy_null(_: Any) -> str:
    return "\\N"


def _copy_bool(value: bool) -> str:
    return "t" if value else "f"


#: COPY text formatting by exact type (the common case, one dict lookup per value).
_COPY_FORMAT: dict[type, Callable[[Any], str]] = {
    str: _copy_str,
    float: float.__repr__,  # 'nan' / 'inf' are accepted by float8in
    int: int.__str__,
    bool: _copy_bool,
    type(None): _copy_null,
    datetime: datetime.isoformat,
    date: date.isoformat,
}


def _copy_text(value: Any) -> str:
    """One field of PostgreSQL's COPY text format."""
    fmt = _COPY_FORMAT.get(type(value))
    if fmt is not None:
        return fmt(value)
    if isinstance(value, bool):
        return _copy_bool(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, int):
        return int.__str__(value)
    return _copy_str(str(value))


def _copy_line(values: Sequence[Any]) -> str:
    """One row of COPY text format (tab separated, newline terminated)."""
    get = _COPY_FORMAT.get
    return "\t".join([(get(type(v)) or _copy_text)(v) for v in values]) + "\n"


class QuakeSink(Sink):
    """Upserts ``earthquakes`` rows: one transaction per batch, newest ``updated``
    wins, an older or equal revision is ignored (so redelivery is idempotent).

    ``method="values"`` sends one multi-row ``INSERT ... VALUES`` built by
    ``psycopg2.extras.execute_values``; ``method="copy"`` COPYs the batch into a
    temporary table and merges it with ``INSERT ... SELECT ... ON CONFLICT``.
    """

    name = "quake-sink"

    def __init__(
        self,
        settings: Settings,
        *,
        method: Literal["copy", "values"] = "copy",
        **kwargs: Any,
    ) -> None:
        super().__init__(settings, **kwargs)
        if method not in ("copy", "values"):
            raise ValueError(f"unknown method {method!r}; use 'copy' or 'values'")
        self.method = method
        self.table = qualified(settings, "earthquakes")
        self.upsert_values = build_quake_upsert(settings)
        self.stage_create, self.stage_copy, self.upsert_stage = build_quake_copy(
            settings
        )

    def write_batch(self, items: Sequence[Item]) -> None:
        rows = [_quake_values(item.row) for item in dedupe_latest(items)]
        if not rows:
            return
        with transaction(
            self.settings, engine=self.engine, action="upsert into earthquakes"
        ) as cur:
            if self.method == "values":
                execute_values(cur, self.upsert_values, rows, page_size=len(rows))
            else:
                self._copy_merge(cur, rows)

    def _copy_merge(self, cur: PgCursor, rows: Sequence[tuple[Any, ...]]) -> None:
        text = "".join([_copy_line(values) for values in rows])
        buf = io.BytesIO(text.encode("utf-8"))  # a lone surrogate: ValueError
        cur.execute(self.stage_create)
        cur.copy_expert(self.stage_copy, buf)
        cur.execute(self.upsert_stage)


def _column_list(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _upsert_tail() -> sql.Composable:
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
        for c in QUAKE_COLUMNS
        if c != "id"
    )
    return sql.SQL(
        " ON CONFLICT ({id}) DO UPDATE SET {updates}, {ingested} = now()"
        " WHERE EXCLUDED.{updated} > {alias}.{updated}"
    ).format(
        id=sql.Identifier("id"),
        updates=updates,
        ingested=sql.Identifier("ingested_at"),
        updated=sql.Identifier("updated"),
        alias=sql.Identifier("e"),
    )


def build_quake_upsert(settings: Settings) -> sql.Composed:
    """``INSERT INTO "schema"."earthquakes" AS e (...) VALUES %s ON CONFLICT ...``."""
    return sql.SQL("INSERT INTO {table} AS {alias} ({columns}) VALUES %s{tail}").format(
        table=qualified(settings, "earthquakes"),
        alias=sql.Identifier("e"),
        columns=_column_list(QUAKE_COLUMNS),
        tail=_upsert_tail(),
    )


def build_quake_copy(
    settings: Settings,
) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
    """The three statements of the COPY path: create the session's staging table
    (columns only, emptied at every commit), COPY into it, merge it."""
    table = qualified(settings, "earthquakes")
    stage = sql.Identifier("streamapp_stage_earthquakes")
    columns = _column_list(QUAKE_COLUMNS)
    create = sql.SQL(
        "CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS"
        " AS SELECT {columns} FROM {table} WITH NO DATA"
    ).format(stage=stage, columns=columns, table=table)
    copy = sql.SQL("COPY {stage} ({columns}) FROM STDIN").format(
        stage=stage, columns=columns
    )
    merge = sql.SQL(
        "INSERT INTO {table} AS {alias} ({columns}) SELECT {columns} FROM {stage}{tail}"
    ).format(
        table=table,
        alias=sql.Identifier("e"),
        columns=columns,
        stage=stage,
        tail=_upsert_tail(),
    )
    return create, copy, merge


# --------------------------------------------------------------------- dead letters


def _clean_text(value: Any) -> Any:
    """A string PostgreSQL text/jsonb accepts: NUL and unencodable characters are
    replaced (the original bytes are kept in ``payload`` anyway)."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, Mapping):
        return {str(_clean_text(str(k))): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # jsonb has no NaN/Infinity
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean_text(str(value))


def _timestamp(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def dead_letter_row(
    letter: Any, *, topic: str, partition: int, offset: int
) -> dict[str, Any]:
    """The ``dead_letters`` row of a ``models.records.DeadLetter``.

    ``topic``/``partition``/``offset`` are where the dead letter itself was read
    from; they stand in for the source coordinates if the letter lacks them, so a
    replay still maps to the same row.
    """
    source_topic = getattr(letter, "source_topic", None)
    source_partition = getattr(letter, "source_partition", None)
    source_offset = getattr(letter, "source_offset", None)
    if source_topic is None or source_partition is None or source_offset is None:
        source_topic, source_partition, source_offset = topic, partition, offset
    return {
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "key": letter.key_bytes(),
        "payload": letter.payload_bytes() or b"",
        "error_kind": letter.error_kind,
        "error_message": letter.error_message,
        "error_detail": letter.error_detail,
        "failed_at": letter.failed_at,
    }


def _dead_letter_values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    detail = row.get("error_detail")
    key = row.get("key")
    payload = row.get("payload")
    return (
        _clean_text(str(row.get("source_topic"))),
        row.get("source_partition"),
        row.get("source_offset"),
        bytes(key) if key is not None else None,
        bytes(payload) if payload is not None else b"",
        _clean_text(str(row.get("error_kind") or "unknown")),
        _clean_text(row.get("error_message")),
        Json(_clean_json(detail), dumps=_dumps) if detail is not None else None,
        _timestamp(row.get("failed_at")),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _pages(rows: Sequence[tuple[Any, ...]], limit: int) -> Iterable[list[Any]]:
    page: list[Any] = []
    size = 0
    for values in rows:
        weight = len(values[4]) + len(values[3] or b"") + 256
        if page and size + weight > limit:
            yield page
            page, size = [], 0
        page.append(values)
        size += weight
    if page:
        yield page


class DeadLetterSink(Sink):
    """Inserts ``dead_letters`` rows; a dead letter already stored (same source
    topic, partition and offset) is ignored, so replays are idempotent."""

    name = "dead-letter-sink"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.insert = build_dead_letter_insert(settings)

    def write_batch(self, items: Sequence[Item]) -> None:
        rows = [_dead_letter_values(item.row) for item in items]
        if not rows:
            return
        with transaction(
            self.settings, engine=self.engine, action="insert into dead_letters"
        ) as cur:
            for page in _pages(rows, DEAD_LETTER_PAGE_BYTES):
                execute_values(cur, self.insert, page, page_size=len(page))

    @staticmethod
    def fallback(rejected: Rejected) -> Item:
        """A minimal version of a refused dead letter (original bytes, the kind, and
        the database's reason instead of the detail), to store instead."""
        row = dict(rejected.item.row)
        row["error_message"] = f"stored without detail: {rejected.error}"[:2000]
        row["error_detail"] = None
        row["failed_at"] = None
        return Item(row, rejected.item.ref)


def build_dead_letter_insert(settings: Settings) -> sql.Composed:
    """``INSERT INTO "schema"."dead_letters" ... ON CONFLICT DO NOTHING``."""
    return sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES %s"
        " ON CONFLICT ({topic}, {partition}, {offset}) DO NOTHING"
    ).format(
        table=qualified(settings, "dead_letters"),
        columns=_column_list(DEAD_LETTER_COLUMNS),
        topic=sql.Identifier("source_topic"),
        partition=sql.Identifier("source_partition"),
        offset=sql.Identifier("source_offset"),
    )
