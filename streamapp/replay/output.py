"""Output: a replayed frame written to Parquet or CSV."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

__all__ = ["check_output", "write_frame"]


def check_output(out: str | Path) -> Path:
    """``out`` as a Path; raises ValueError unless it ends in .parquet or .csv."""
    path = Path(out)
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"{path}: the output must end in .parquet or .csv")
    return path


def write_frame(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write a replayed frame to ``.parquet`` or ``.csv`` (bytes as base64 in CSV)."""
    path = check_output(out)
    suffix = path.suffix.lower()
    data = frame.copy()
    data.attrs = {}
    for column in data.columns:
        series = data[column]
        if series.dtype != object:
            continue
        kinds = {type(v) for v in series if v is not None and v is not pd.NA}
        if bytes in kinds and suffix == ".csv":
            data[column] = series.map(
                lambda v: (
                    base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
                )
            )
        elif len(kinds) > 1 and bytes not in kinds:
            data[column] = series.map(
                lambda v: v if v is None or isinstance(v, str) else json.dumps(v)
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        data.to_parquet(path, index=False)
    else:
        data.to_csv(path, index=False)
    return path
