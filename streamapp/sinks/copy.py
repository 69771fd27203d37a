"""PostgreSQL's COPY text format: one field, one line (tab separated, escaped)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

__all__ = ["copy_line", "copy_text"]

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


def copy_text(value: Any) -> str:
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


def copy_line(values: Sequence[Any]) -> str:
    """One row of COPY text format (tab separated, newline terminated)."""
    get = _COPY_FORMAT.get
    return "\t".join([(get(type(v)) or copy_text)(v) for v in values]) + "\n"
