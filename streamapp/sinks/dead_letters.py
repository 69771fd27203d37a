"""The dead-letter connector: inserts ``dead_letters`` rows, a replay is a no-op."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from streamapp.db import column_list, qualified, transaction
from streamapp.settings import Settings
from streamapp.sinks.base import Item, Rejected, Sink

__all__ = [
    "DEAD_LETTER_PAGE_BYTES",
    "DEAD_LETTER_TABLE_COLUMNS",
    "DeadLetterSink",
    "build_dead_letter_insert",
    "dead_letter_pages",
    "dead_letter_row",
    "dead_letter_values",
]

#: Columns of ``dead_letters`` written by the sink, in statement order.
DEAD_LETTER_TABLE_COLUMNS: tuple[str, ...] = (
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


def _pg_text(value: Any) -> Any:
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


def _pg_json(value: Any) -> Any:
    if isinstance(value, str):
        return _pg_text(value)
    if isinstance(value, Mapping):
        return {str(_pg_text(str(k))): _pg_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_pg_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # jsonb has no NaN/Infinity
    if value is None or isinstance(value, bool | int | float):
        return value
    return _pg_text(str(value))


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


def dead_letter_values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values of a ``dead_letters`` row in :data:`DEAD_LETTER_TABLE_COLUMNS`
    order, made acceptable to PostgreSQL (text without NUL, finite JSON)."""
    detail = row.get("error_detail")
    key = row.get("key")
    payload = row.get("payload")
    return (
        _pg_text(str(row.get("source_topic"))),
        row.get("source_partition"),
        row.get("source_offset"),
        bytes(key) if key is not None else None,
        bytes(payload) if payload is not None else b"",
        _pg_text(str(row.get("error_kind") or "unknown")),
        _pg_text(row.get("error_message")),
        Json(_pg_json(detail), dumps=_dumps) if detail is not None else None,
        _timestamp(row.get("failed_at")),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def dead_letter_pages(
    rows: Sequence[tuple[Any, ...]], limit: int
) -> Iterable[list[Any]]:
    """``rows`` in pages of about ``limit`` bytes of key and payload (at least one
    row per page)."""
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
        rows = [dead_letter_values(item.row) for item in items]
        if not rows:
            return
        with transaction(
            self.settings, engine=self.engine, action="insert into dead_letters"
        ) as cur:
            for page in dead_letter_pages(rows, DEAD_LETTER_PAGE_BYTES):
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
        table=qualified(settings.postgres_schema, "dead_letters"),
        columns=column_list(DEAD_LETTER_TABLE_COLUMNS),
        topic=sql.Identifier("source_topic"),
        partition=sql.Identifier("source_partition"),
        offset=sql.Identifier("source_offset"),
    )
