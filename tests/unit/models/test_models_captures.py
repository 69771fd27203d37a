"""Every feature of every real USGS capture validates and maps exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from models.records import Quake
from models.schema import ENVELOPE_SCHEMA, FeatureSchema, fast_load_envelope
from tests.unit.models.support import (
    CAPTURES,
    SOURCE_URL,
    all_features,
    capture,
    encode,
    envelope,
    feature,
    validate,
)

FEATURES = all_features()


def _utc_ms(ms: int) -> datetime:
    """Epoch milliseconds -> UTC datetime, computed independently of the schema."""
    whole, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(whole, UTC).replace(microsecond=millis * 1000)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def expected_quake(feat: dict[str, Any], partition: int, offset: int) -> Quake:
    """The Quake a feature must become, written out field by field."""
    props = feat["properties"]
    lon, lat, depth = feat["geometry"]["coordinates"]
    return Quake(
        id=feat["id"],
        time=_utc_ms(props["time"]),
        updated=_utc_ms(props["updated"]),
        longitude=float(lon),
        latitude=float(lat),
        depth=float(depth),
        magnitude=_opt_float(props["mag"]),
        mag_type=props["magType"],
        place=props["place"],
        status=props["status"].lower(),
        event_type=props["type"],
        tsunami=None if props["tsunami"] is None else bool(props["tsunami"]),
        significance=props["sig"],
        url=props["url"],
        felt=props["felt"],
        cdi=_opt_float(props["cdi"]),
        mmi=_opt_float(props["mmi"]),
        alert=props["alert"],
        net=props["net"],
        code=props["code"],
        title=props["title"],
        fetched_at=datetime(2024, 5, 31, 23, 30, 0, 123456, tzinfo=UTC),
        source_url=SOURCE_URL,
        raw_partition=partition,
        raw_offset=offset,
    )


def test_captures_are_all_there() -> None:
    counts = {name: len(capture(name)["features"]) for name in CAPTURES}
    assert counts == {
        "all_day_2014-04-14.geojson": 146,
        "all_hour_2017-12-03.geojson": 8,
        "all_hour_2024-05-31.geojson": 8,
        "significant_week_2017.geojson": 4,
    }


@pytest.mark.parametrize(
    ("name", "feat"), FEATURES, ids=[f"{n[:-8]}:{f['id']}" for n, f in FEATURES]
)
def test_every_feature_validates_and_maps_exactly(
    name: str, feat: dict[str, Any]
) -> None:
    quake = validate(encode(envelope(feat)), partition=3, offset=1234)
    expected = expected_quake(feat, 3, 1234)
    assert quake.to_row() == expected.to_row()
    for field in ("magnitude", "longitude", "latitude", "depth", "cdi", "mmi"):
        value = getattr(quake, field)
        assert value is None or type(value) is float, field
    for field in ("time", "updated", "fetched_at"):
        assert getattr(quake, field).tzinfo is UTC, field


def test_every_feature_fast_path_equals_marshmallow() -> None:
    for _, feat in FEATURES:
        env = envelope(feat)
        assert fast_load_envelope(env) == ENVELOPE_SCHEMA.load(env), feat["id"]


def test_feature_schema_loads_flat_quake_fields() -> None:
    loaded = FeatureSchema().load(feature("nc72934355"))
    assert loaded["id"] == "nc72934355"
    assert loaded["magnitude"] == 1.93
    assert loaded["longitude"] == -122.1271667
    assert "properties" not in loaded
    assert "gap" not in loaded  # validated, not kept


def test_spot_check_2014_automatic_upper_case() -> None:
    quake = validate(encode(envelope(feature("nc72199065"))))
    assert quake.id == "nc72199065"
    assert quake.time == datetime(2014, 4, 14, 11, 29, 11, 100000, tzinfo=UTC)
    assert quake.updated == datetime(2014, 4, 14, 11, 51, 8, 811000, tzinfo=UTC)
    assert quake.status == "automatic"  # was "AUTOMATIC"
    assert quake.tsunami is None  # null in 2014
    assert quake.mag_type == "Md"  # magType is not case-normalised
    assert (quake.longitude, quake.latitude, quake.depth) == (-120.7958, 35.5448, 4.3)
    assert quake.significance == 44


def test_spot_check_reviewed_upper_case_and_integer_depth() -> None:
    quake = validate(encode(envelope(feature("pr14103005"))))
    assert quake.status == "reviewed"  # was "REVIEWED"
    assert quake.depth == 71.0 and type(quake.depth) is float  # written as 71


def test_spot_check_integer_magnitude_becomes_float() -> None:
    quake = validate(encode(envelope(feature("usc000pjti"))))
    assert quake.magnitude == 5.0 and type(quake.magnitude) is float  # "mag": 5
    assert quake.felt == 0 and quake.cdi == 1.0 and type(quake.cdi) is float


def test_spot_check_quarry_blast_is_kept() -> None:
    quake = validate(encode(envelope(feature("uw60740681"))))
    assert quake.event_type == "quarry"
    assert quake.magnitude == 2.4
    assert quake.depth == 0.0


def test_spot_check_2024_dyfi_and_modern_nulls() -> None:
    quake = validate(encode(envelope(feature("ci40609151"))))
    assert quake.felt == 1 and quake.cdi == 2.7
    assert quake.tsunami is False
    assert quake.time == datetime(2024, 5, 31, 22, 49, 33, 590000, tzinfo=UTC)
    alaska = validate(encode(envelope(feature("ak0246zr2f7h"))))
    assert alaska.magnitude == 2.0 and alaska.depth == 100.7


def test_spot_check_significant_event() -> None:
    quake = validate(encode(envelope(feature("us2000c1zn"))))
    assert quake.tsunami is True
    assert quake.alert == "green"
    assert quake.mmi == 6.08
    assert quake.significance == 630
    assert quake.time == datetime(2017, 12, 8, 9, 51, 10, 300000, tzinfo=UTC)


def test_every_capture_round_trips_through_the_clean_topic_format() -> None:
    for offset, (_, feat) in enumerate(FEATURES):
        quake = validate(encode(envelope(feat)), partition=0, offset=offset)
        assert Quake.loads(quake.dumps()) == quake
