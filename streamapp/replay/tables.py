"""Tables: a whole PostgreSQL table of the pipeline as a DataFrame (UTC times)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy

from streamapp.db import make_engine, qualified_text
from streamapp.settings import Settings

__all__ = ["TABLES", "read_table"]

#: The tables :func:`read_table` may read.
TABLES: tuple[str, ...] = ("earthquakes", "dead_letters")


def read_table(
    settings: Settings, table: str = "earthquakes", *, engine: Any = None
) -> pd.DataFrame:
    """Read a whole table of ``settings.postgres_schema`` into a DataFrame.

    Identifiers are quoted; times come back as UTC datetimes. Pass ``engine`` to
    reuse a SQLAlchemy engine, otherwise one is made (and disposed of) here.
    """
    if table not in TABLES:
        raise ValueError(f"table={table!r} is not one of {', '.join(TABLES)}")
    own = engine is None
    if own:
        engine = make_engine(settings, pool_size=1, max_overflow=0)
    try:
        sql = f"SELECT * FROM {qualified_text(settings.postgres_schema, table)}"
        with engine.connect() as conn:
            frame = pd.read_sql_query(sqlalchemy.text(sql), conn)
    finally:
        if own:
            engine.dispose()
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            frame[column] = series.dt.tz_convert("UTC")
        elif series.dtype == object and series.map(_is_aware).any():
            frame[column] = pd.to_datetime(series, utc=True)
    return frame


def _is_aware(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None
