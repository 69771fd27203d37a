"""Shared helpers of the models tests: the real captures and envelope builders."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from models.records import Quake
from models.validation import validate_raw

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "usgs"
CAPTURES = tuple(sorted(p.name for p in FIXTURES.glob("*.geojson")))
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
FETCHED_AT = "2024-05-31T23:30:00.123456Z"
SOURCE_URL = (
    "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson"
)


@cache
def _capture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def capture(name: str) -> dict[str, Any]:
    """A fresh copy of one capture (a GeoJSON FeatureCollection)."""
    return copy.deepcopy(_capture(name))


def all_features() -> list[tuple[str, dict[str, Any]]]:
    """``(capture name, feature)`` for every feature of every capture."""
    return [(name, f) for name in CAPTURES for f in capture(name)["features"]]


def feature(feature_id: str) -> dict[str, Any]:
    """A fresh copy of the feature with this id (from any capture)."""
    for _, candidate in all_features():
        if candidate["id"] == feature_id:
            return candidate
    raise KeyError(feature_id)


def envelope(
    feat: Any, fetched_at: Any = FETCHED_AT, source_url: Any = SOURCE_URL
) -> dict[str, Any]:
    """The raw-topic envelope the producer writes around ``feat``."""
    return {"feature": feat, "fetched_at": fetched_at, "source_url": source_url}


def encode(obj: Any) -> bytes:
    """JSON bytes as the producer would write them (NaN stays a literal)."""
    return json.dumps(obj).encode("utf-8")


def validate(value: Any, **kwargs: Any) -> Quake:
    """``validate_raw`` with the default settings' limits."""
    kwargs.setdefault("max_bytes", MAX_BYTES)
    kwargs.setdefault("max_depth", MAX_DEPTH)
    return validate_raw(value, **kwargs)


def detail_at(detail: Any, path: tuple[str, ...]) -> Any:
    """The messages at ``path`` in a nested error detail (KeyError if absent)."""
    node = detail
    for key in path:
        node = node[key]
    return node
