"""Frames: decoded rows as a typed pandas DataFrame, the columns of their kind first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from streamapp.replay.columns import (
    CLEAN_FRAME_COLUMNS,
    DEAD_LETTER_FRAME_COLUMNS,
    META_FRAME_COLUMNS,
    RAW_FRAME_COLUMNS,
)
from streamapp.replay.decoding import RecordLike, decode_record, in_window, to_millis

__all__ = ["build_frame", "records_to_frame"]

_RAW_NUMERIC = (
    "mag",
    "tz",
    "felt",
    "cdi",
    "mmi",
    "tsunami",
    "sig",
    "nst",
    "dmin",
    "rms",
    "gap",
    "lon",
    "lat",
    "depth",
)
_CLEAN_NUMERIC = (
    "longitude",
    "latitude",
    "depth",
    "magnitude",
    "cdi",
    "mmi",
)
_CLEAN_INTEGER = ("significance", "felt", "raw_partition", "raw_offset")
#: Column names holding epoch milliseconds in the USGS feed.
_EPOCH_MS_COLUMNS = frozenset(("time", "updated"))


def records_to_frame(
    records: Iterable[RecordLike],
    kind: str = "auto",
    *,
    since: Any = None,
    until: Any = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Decode ``records`` into a DataFrame, keeping ``since <= timestamp < until``.

    The same filtering and decoding :func:`replay_topic` applies to a live topic,
    usable on any ConsumerRecord-like objects (tests, files of captured messages).
    """
    since_ms, until_ms = to_millis(since), to_millis(until)
    rows: list[dict[str, Any]] = []
    for record in records:
        if limit is not None and len(rows) >= limit:
            break
        if in_window(record.timestamp, since_ms, until_ms):
            rows.append(decode_record(record, kind))
    return build_frame(rows, kind)


def build_frame(rows: list[dict[str, Any]], kind: str) -> pd.DataFrame:
    """A DataFrame of decoded ``rows``: the kind's columns first, then any other
    column met, typed (numbers, nullable integers, UTC times)."""
    if kind == "raw":
        first: Sequence[str] = RAW_FRAME_COLUMNS
    elif kind == "dead-letter":
        first = DEAD_LETTER_FRAME_COLUMNS
    else:
        first = CLEAN_FRAME_COLUMNS if kind == "clean" else META_FRAME_COLUMNS
    known = set(first)
    extra: dict[str, None] = {}
    for row in rows:
        if not known.issuperset(row):
            for column in row:
                if column not in known:
                    extra.setdefault(column, None)
    columns = [*first, *extra]
    if kind == "raw" and "decode_error" in columns:
        # keep the error columns last, after any unexpected property
        columns = [c for c in columns if c not in ("decode_error", "value_preview")]
        columns += ["decode_error", "value_preview"]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame = frame.astype({"partition": "int64", "offset": "int64"})
    frame["timestamp"] = pd.to_datetime(
        pd.to_numeric(frame["timestamp"], errors="coerce"), unit="ms", utc=True
    )
    if kind == "raw":
        for column in _RAW_NUMERIC:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if kind == "clean":
        for column in _CLEAN_NUMERIC:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        for column in _CLEAN_INTEGER:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(
                "Int64"
            )
    if kind == "dead-letter":
        for column in ("source_partition", "source_offset", "payload_size"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(
                "Int64"
            )
    for column in frame.columns:
        frame[column] = _as_time(column, frame[column])
    return frame


def _as_time(column: str, series: pd.Series) -> pd.Series:
    """Time columns as UTC datetimes (epoch ms or ISO-8601); other columns unchanged."""
    epoch = column in _EPOCH_MS_COLUMNS
    if not (epoch or column.endswith("_at") or column.endswith("_time")):
        return series
    present = series.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all() and not present.map(_is_bool).any():
        return pd.to_datetime(
            pd.to_numeric(series, errors="coerce"), unit="ms", utc=True
        )
    if present.map(lambda v: isinstance(v, str)).all():
        return pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    if epoch:  # a raw feed value of the wrong type: keep the numbers only
        return pd.to_datetime(
            pd.to_numeric(series, errors="coerce"), unit="ms", utc=True
        )
    return series


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)
