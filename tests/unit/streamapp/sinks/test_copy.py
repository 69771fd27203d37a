"""streamapp.sinks.copy: PostgreSQL's COPY text format."""

from __future__ import annotations

from datetime import UTC, datetime

from streamapp.sinks.copy import copy_line, copy_text

T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)


def test_copy_text_format() -> None:
    assert copy_text(None) == "\\N"
    assert copy_text(True) == "t"
    assert copy_text(False) == "f"
    assert copy_text(7) == "7"
    assert copy_text(1.5) == "1.5"
    assert copy_text(float("nan")) == "nan"
    assert copy_text(T0) == "2024-05-31T12:00:00+00:00"
    assert copy_text("a\tb\nc\\d\re") == "a\\tb\\nc\\\\d\\re"
    assert copy_text("") == ""


def test_copy_lines_match_the_field_formatter() -> None:
    values = ("a\tb", None, 1.25, 3, True, T0, "plain")
    line = copy_line(values)
    assert line == "\t".join(copy_text(v) for v in values) + "\n"
    assert line == "a\\tb\t\\N\t1.25\t3\tt\t2024-05-31T12:00:00+00:00\tplain\n"
