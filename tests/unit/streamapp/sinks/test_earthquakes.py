"""streamapp.sinks.earthquakes without a database: dedupe, row values, fast JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.records import Quake
from streamapp.settings import Settings
from streamapp.sinks import (
    QUAKE_TABLE_COLUMNS,
    Item,
    QuakeSink,
    dedupe_latest,
    quake_row,
    quake_row_from_json,
)
from streamapp.sinks.earthquakes import quake_values
from tests.support.sinks import real_quakes

T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)


def _row(ident: str, minutes: int = 0, offset: int = 0, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": ident,
        "time": T0,
        "updated": T0 + timedelta(minutes=minutes),
        "longitude": 1.0,
        "latitude": 2.0,
        "depth": 3.0,
        "kafka_partition": 0,
        "kafka_offset": offset,
    }
    row.update(extra)
    return row


# ------------------------------------------------------------------------- dedupe


def test_dedupe_keeps_the_largest_updated_per_id() -> None:
    items = [
        Item(_row("b", minutes=1, offset=1), "b1"),
        Item(_row("a", minutes=5, offset=2), "a5"),
        Item(_row("b", minutes=3, offset=3), "b3"),
        Item(_row("a", minutes=2, offset=4), "a2"),  # older revision arrives later
        Item(_row("c", minutes=0, offset=5), "c0"),
    ]
    kept = dedupe_latest(items)
    assert [item.ref for item in kept] == ["a5", "b3", "c0"]  # sorted by id


def test_dedupe_tie_on_updated_keeps_the_later_offset() -> None:
    items = [
        Item(_row("a", 1, offset=7), "first"),
        Item(_row("a", 1, offset=9), "last"),
    ]
    assert [item.ref for item in dedupe_latest(items)] == ["last"]


def test_dedupe_accepts_iso_text_times() -> None:
    items = [
        Item({"id": "a", "updated": "2024-05-31T12:05:00Z", "kafka_offset": 1}, "new"),
        Item({"id": "a", "updated": "2024-05-31T12:01:00+00:00", "kafka_offset": 2}, 0),
    ]
    assert [item.ref for item in dedupe_latest(items)] == ["new"]


# -------------------------------------------------------------- value conversions


def test_quake_values_follow_the_column_order() -> None:
    row = _row("a", tsunami=1, magnitude=4.2)
    values = quake_values(row)
    assert len(values) == len(QUAKE_TABLE_COLUMNS)
    assert values[QUAKE_TABLE_COLUMNS.index("id")] == "a"
    assert values[QUAKE_TABLE_COLUMNS.index("tsunami")] is True  # int 0/1 -> boolean
    assert values[QUAKE_TABLE_COLUMNS.index("magnitude")] == 4.2


def test_quake_sink_rejects_unknown_methods(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        QuakeSink(settings, method="bulk")  # type: ignore[arg-type]


# ------------------------------------------------- fast JSON path == Quake records


def _normalised(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if name in ("time", "updated", "fetched_at") and isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        out[name] = value
    return out


def test_fast_json_rows_equal_the_record_rows_for_every_real_capture() -> None:

    for quake in real_quakes():
        data = bytes(quake.dumps())
        fast = quake_row_from_json(data, partition=3, offset=7)
        assert fast is not None, quake.id
        slow = quake_row(Quake.loads(data), partition=3, offset=7)
        assert set(fast) == set(QUAKE_TABLE_COLUMNS)
        expected = {c: slow.get(c) for c in QUAKE_TABLE_COLUMNS}
        assert _normalised(fast) == expected, quake.id


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"time": "2024-05-31T12:00:00Z", "updated": "2024-05-31T12:00:00Z",'
        b' "longitude": 1, "latitude": 2, "depth": 3}',  # no id
        b'{"id": "", "time": "t", "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3}',  # empty id
        b'{"id": 5, "time": "t", "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3}',  # id not text
        b'{"id": "a", "time": 1, "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3}',  # time not text
        b'{"id": "a", "time": "t", "updated": "u", "longitude": "1", "latitude": 2,'
        b' "depth": 3}',  # longitude as text (Quake.loads decides)
        b'{"id": "a", "time": "t", "updated": "u", "longitude": true, "latitude": 2,'
        b' "depth": 3}',
        b'{"id": "a", "time": "t", "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3, "place": {"nested": 1}}',
    ],
)
def test_fast_json_path_leaves_odd_values_to_the_record(data: bytes) -> None:
    assert quake_row_from_json(data, partition=0, offset=0) is None
