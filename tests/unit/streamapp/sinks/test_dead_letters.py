"""streamapp.sinks.dead_letters without a database: sanitised values, pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from psycopg2.extras import Json

from streamapp.sinks import (
    DeadLetterSink,
    Item,
    Rejected,
)
from streamapp.sinks.dead_letters import dead_letter_pages, dead_letter_values

T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)


def test_dead_letter_values_are_sanitised_for_postgres() -> None:
    row = {
        "source_topic": "raw",
        "source_partition": 1,
        "source_offset": 2,
        "key": b"k",
        "payload": b"\x00\xffraw",
        "error_kind": "schema",
        "error_message": "bad\x00value \ud800",
        "error_detail": {"field\x00": ["nul\x00", float("nan")], "n": 1},
        "failed_at": "2024-05-31T12:00:00Z",
    }
    values = dead_letter_values(row)
    assert values[4] == b"\x00\xffraw"  # the bytes are never touched
    assert "\x00" not in values[6]
    values[6].encode("utf-8")  # no lone surrogate left
    detail = values[7]
    assert isinstance(detail, Json)
    text = detail.dumps(detail.adapted)
    assert "\\u0000" not in text and "NaN" not in text.replace('"nan"', "")
    json.loads(text)
    assert values[8] == T0


def test_dead_letter_pages_bound_the_statement_size() -> None:
    rows = [("t", 0, i, None, b"x" * 1000, "k", "m", None, None) for i in range(100)]
    pages = list(dead_letter_pages(rows, 10_000))
    assert sum(len(p) for p in pages) == 100
    assert all(len(p) <= 9 for p in pages)
    assert [r[2] for p in pages for r in p] == list(range(100))


def test_dead_letter_fallback_keeps_the_bytes() -> None:
    item = Item({"payload": b"x", "error_kind": "schema", "error_detail": {"a": 1}}, 7)
    minimal = DeadLetterSink.fallback(Rejected(item, "invalid input", "22P02"))
    assert minimal.ref == 7
    assert minimal.row["payload"] == b"x"
    assert minimal.row["error_detail"] is None
    assert "invalid input" in minimal.row["error_message"]
