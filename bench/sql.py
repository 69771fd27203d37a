"""SQL the baseline and the peer share: the event upsert and the dead-letter insert."""

from __future__ import annotations

import json
from typing import Any

from psycopg2.extras import execute_values

from models.records import DeadLetter, Quake
from streamapp.sinks import DEAD_LETTER_TABLE_COLUMNS as DEAD_LETTER_COLUMNS
from streamapp.sinks import QUAKE_TABLE_COLUMNS as QUAKE_COLUMNS

__all__ = [
    "DEAD_LETTER_COLUMNS",
    "EVENT_COLUMNS",
    "dead_letter_row",
    "event_row",
    "insert_dead_letters",
    "upsert_events",
]

#: Columns of ``earthquakes`` and ``dead_letters`` written by a sink (the project's own
#: lists, so every contender writes exactly what streamapp writes).
EVENT_COLUMNS: tuple[str, ...] = QUAKE_COLUMNS

_UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in EVENT_COLUMNS if c != "id")
#: The upsert of the pipeline: a revision replaces the row only if ``updated`` grew.
UPSERT_TAIL = (
    f"ON CONFLICT (id) DO UPDATE SET {_UPDATE}, ingested_at = now() "
    "WHERE earthquakes.updated < EXCLUDED.updated"
)
UPSERT_ONE = (
    f"INSERT INTO earthquakes ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))}) {UPSERT_TAIL}"
)
UPSERT_MANY = (
    f"INSERT INTO earthquakes ({', '.join(EVENT_COLUMNS)}) VALUES %s {UPSERT_TAIL}"
)
INSERT_DEAD_ONE = (
    f"INSERT INTO dead_letters ({', '.join(DEAD_LETTER_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(DEAD_LETTER_COLUMNS))}) "
    "ON CONFLICT ON CONSTRAINT dead_letters_source_key DO NOTHING"
)
INSERT_DEAD_MANY = (
    f"INSERT INTO dead_letters ({', '.join(DEAD_LETTER_COLUMNS)}) VALUES %s "
    "ON CONFLICT ON CONSTRAINT dead_letters_source_key DO NOTHING"
)


def event_row(quake: Quake, partition: int, offset: int) -> tuple[Any, ...]:
    """The ``earthquakes`` row of ``quake`` (lineage: the message that carried it)."""
    row = quake.to_row()
    return (*(row[c] for c in EVENT_COLUMNS[:-2]), partition, offset)


def dead_letter_row(letter: DeadLetter) -> tuple[Any, ...]:
    """The ``dead_letters`` row of ``letter`` (original key and payload bytes)."""
    return (
        letter.source_topic,
        letter.source_partition,
        letter.source_offset,
        letter.key_bytes(),
        letter.payload_bytes(),
        letter.error_kind,
        letter.error_message,
        json.dumps(letter.error_detail),
        letter.failed_at,
    )


def upsert_events(cur: Any, rows: list[tuple[Any, ...]]) -> None:
    """Upsert many event rows with one multi-row INSERT per 1,000 rows."""
    if rows:
        # Within one statement a key may appear once: keep the newest per id.
        newest: dict[str, tuple[Any, ...]] = {}
        at = EVENT_COLUMNS.index("updated")
        for row in rows:
            old = newest.get(row[0])
            if old is None or old[at] < row[at]:
                newest[row[0]] = row
        execute_values(cur, UPSERT_MANY, list(newest.values()), page_size=1000)


def insert_dead_letters(cur: Any, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        execute_values(cur, INSERT_DEAD_MANY, rows, page_size=1000)
