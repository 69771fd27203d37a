"""The raw-topic envelope (encode_raw), feature ids, URL redaction, document parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from streamapp.exceptions import SourceResponseError
from streamapp.sources import (
    Source,
    encode_raw,
    feature_id,
    parse_feature_collection,
    redact_source_url,
)
from streamapp.sources.replay import ReplaySource
from tests.unit.streamapp.sources.source_testkit import FEED_2024

FETCHED = datetime(2024, 5, 31, 23, 59, 58, 123456, tzinfo=UTC)
URL = "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson"


def test_encode_raw_format() -> None:
    feature = json.loads(FEED_2024.read_bytes())["features"][0]
    key, value = encode_raw(feature, FETCHED, URL)
    assert key == feature["id"].encode("utf-8") == b"nc75013992"
    envelope = json.loads(value)
    assert set(envelope) == {"feature", "fetched_at", "source_url"}
    assert envelope["feature"] == feature  # exactly as received
    assert envelope["fetched_at"] == "2024-05-31T23:59:58.123456+00:00"
    assert datetime.fromisoformat(envelope["fetched_at"]) == FETCHED
    assert envelope["source_url"] == URL
    assert b" " not in value.split(b'"feature"')[0]  # compact separators


def test_encode_raw_converts_fetched_at_to_utc() -> None:
    plus2 = FETCHED.astimezone(timezone(timedelta(hours=2)))
    _, value = encode_raw({"id": "a"}, plus2, URL)
    assert json.loads(value)["fetched_at"] == "2024-05-31T23:59:58.123456+00:00"
    naive = FETCHED.replace(tzinfo=None)
    _, value = encode_raw({"id": "a"}, naive, URL)
    assert json.loads(value)["fetched_at"].endswith("+00:00")


@pytest.mark.parametrize(
    "feature",
    [
        {"type": "Feature"},
        {"id": ""},
        {"id": 123},
        {"id": None},
        {"id": ["a"]},
        {"id": "\ud800"},
        "a string",
        42,
        None,
        [1, 2],
    ],
)
def test_no_usable_id_gives_no_key(feature: Any) -> None:
    key, value = encode_raw(feature, FETCHED, URL)
    assert key is None
    assert feature_id(feature) is None
    envelope = json.loads(value)
    assert envelope["feature"] == feature


def test_non_ascii_stays_utf8_and_nan_is_passed_on() -> None:
    feature = {
        "id": "us1",
        "properties": {"place": "Ñuñoa, Chile", "mag": float("nan")},
    }
    key, value = encode_raw(feature, FETCHED, URL)
    assert key == b"us1"
    assert "Ñuñoa".encode() in value
    assert b'"mag":NaN' in value  # as the feed sent it; the validator rejects it


def test_redact_source_url() -> None:
    assert redact_source_url(URL) == URL
    assert (
        redact_source_url("https://bob:pw@host:8443/feed?x=1&api_key=abc&Token=t")
        == "https://bob:***@host:8443/feed?x=1&api_key=***&Token=***"
    )
    assert redact_source_url("http://[::1") == "<unparseable url>"


def test_parse_feature_collection_accepts_the_real_feed() -> None:
    features = parse_feature_collection(FEED_2024.read_bytes(), url=URL)
    assert len(features) == 8
    with_bom = b"\xef\xbb\xbf" + FEED_2024.read_bytes()
    assert parse_feature_collection(with_bom, url=URL) == features


def test_parse_feature_collection_names_the_url() -> None:
    with pytest.raises(SourceResponseError) as info:
        parse_feature_collection(b'{"type":', url=URL)
    assert URL in str(info.value)


def test_sources_satisfy_the_interface() -> None:
    assert isinstance(ReplaySource("x.geojson"), Source)
