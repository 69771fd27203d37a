"""Pluggable data sources: ``usgs`` over HTTP and ``replay`` of a capture."""

from __future__ import annotations

from streamapp.sources.base import (
    FetchResult,
    Source,
    build_source,
    encode_raw,
    feature_id,
    parse_feature_collection,
    redact_source_url,
)
from streamapp.sources.replay import ReplaySource, retime
from streamapp.sources.usgs import UsgsSource, parse_retry_after

__all__ = [
    "FetchResult",
    "ReplaySource",
    "Source",
    "UsgsSource",
    "build_source",
    "encode_raw",
    "feature_id",
    "parse_feature_collection",
    "parse_retry_after",
    "redact_source_url",
    "retime",
]
