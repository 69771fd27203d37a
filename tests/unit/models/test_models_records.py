"""Quake and DeadLetter records: exact JSON round trips, rows, bounded dead letters."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from models.records import (
    DEAD_LETTER_KEEP_BYTES,
    DEAD_LETTER_TRUNCATED_PREFIX_BYTES,
    ERROR_DETAIL_MAX_BYTES,
    DeadLetter,
    Quake,
    dead_letter_size_bound,
)
from streamapp.exceptions import InvalidRecord
from streamapp.faust_ext import record_fields
from tests.unit.models.support import encode, envelope, feature, validate

NOW = datetime(2024, 5, 31, 23, 30, 1, 654321, tzinfo=UTC)


def make_quake(**changes: Any) -> Quake:
    fields: dict[str, Any] = {
        "id": "nc75013992",
        "time": datetime(2024, 5, 31, 23, 17, 32, 540000, tzinfo=UTC),
        "updated": datetime(2024, 5, 31, 23, 19, 9, 620001, tzinfo=UTC),
        "longitude": -120.733665466309,
        "latitude": 35.800666809082,
        "depth": 10.0799999237061,
        "magnitude": 1.05,
        "mag_type": "md",
        "place": "6 km NNW of San Miguel, CA",
        "status": "automatic",
        "event_type": "earthquake",
        "tsunami": False,
        "significance": 17,
        "url": "https://earthquake.usgs.gov/earthquakes/eventpage/nc75013992",
        "felt": None,
        "cdi": None,
        "mmi": None,
        "alert": None,
        "net": "nc",
        "code": "75013992",
        "title": "M 1.1 - 6 km NNW of San Miguel, CA",
        "fetched_at": NOW,
        "source_url": "https://example.test/feed.geojson",
        "raw_partition": 2,
        "raw_offset": 987654321,
    }
    fields.update(changes)
    return Quake(**fields)


# --- Quake ----------------------------------------------------------------------


def test_quake_round_trips_exactly() -> None:
    quake = make_quake()
    again = Quake.loads(quake.dumps())
    assert again == quake
    assert again.to_row() == quake.to_row()
    assert again.updated.microsecond == 620001
    assert again.time.tzinfo is UTC and again.fetched_at is not None
    assert again.fetched_at.tzinfo is UTC


def test_quake_json_uses_iso_8601_utc() -> None:
    payload = json.loads(make_quake().dumps())
    assert payload["time"] == "2024-05-31T23:17:32.540000Z"
    assert payload["updated"] == "2024-05-31T23:19:09.620001Z"
    assert payload["fetched_at"] == "2024-05-31T23:30:01.654321Z"
    assert payload["tsunami"] is False
    assert payload["id"] == "nc75013992"


def test_quake_datetimes_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    quake = make_quake(
        time=datetime(2024, 6, 1, 1, 17, 32, 540000, tzinfo=plus_two),
        updated=datetime(2024, 5, 31, 23, 19, 9, 620001),  # naive: taken as UTC
    )
    assert quake.time == datetime(2024, 5, 31, 23, 17, 32, 540000, tzinfo=UTC)
    assert quake.time.tzinfo is UTC
    assert quake.updated.tzinfo is UTC
    assert Quake.loads(quake.dumps()) == quake


def test_quake_round_trip_with_nulls_and_whole_seconds() -> None:
    quake = make_quake(
        time=datetime(2014, 4, 13, 11, 52, 56, tzinfo=UTC),
        magnitude=None,
        tsunami=None,
        fetched_at=None,
        source_url=None,
        raw_partition=None,
        raw_offset=None,
    )
    assert Quake.loads(quake.dumps()) == quake


def test_quake_to_row_is_plain_values() -> None:
    row = make_quake().to_row()
    assert list(row) == list(record_fields(Quake))
    assert "__faust" not in row
    assert row["time"] == datetime(2024, 5, 31, 23, 17, 32, 540000, tzinfo=UTC)
    assert type(row["tsunami"]) is bool
    assert type(row["significance"]) is int
    assert type(row["magnitude"]) is float
    plain = (str, int, float, bool, datetime, type(None))
    assert all(isinstance(value, plain) for value in row.values())


def test_validated_quake_round_trips() -> None:
    quake = validate(encode(envelope(feature("us2000c1zn"))), partition=1, offset=5)
    assert Quake.loads(quake.dumps()) == quake
    assert quake.raw_partition == 1 and quake.raw_offset == 5


# --- DeadLetter -----------------------------------------------------------------


def _error(kind: str = "schema", message: str = "bad", detail: Any = None) -> Any:
    return InvalidRecord(kind, message, detail)


def test_dead_letter_keeps_non_utf8_payload_and_key_bytes() -> None:
    payload = b"\xff\xfe\x00garbage\x80{"
    key = b"\xc3\x28 key"
    with pytest.raises(InvalidRecord) as info:
        validate(payload)
    letter = DeadLetter.build(
        payload, key, "earthquakes.raw", 3, 42, info.value, now=NOW
    )
    assert letter.payload_bytes() == payload
    assert letter.key_bytes() == key
    assert letter.error_kind == "not_utf8"
    again = DeadLetter.loads(letter.dumps())
    assert again == letter
    assert again.payload_bytes() == payload and again.key_bytes() == key
    assert again.failed_at == NOW and again.failed_at.tzinfo is UTC
    assert not again.is_truncated()


def test_dead_letter_headers() -> None:
    letter = DeadLetter.build(
        b"x", None, "earthquakes.raw", 1, 99, _error("not_json", "Expecting value")
    )
    assert letter.headers() == [
        ("error.kind", b"not_json"),
        ("error.message", b"Expecting value"),
        ("source.topic", b"earthquakes.raw"),
        ("source.partition", b"1"),
        ("source.offset", b"99"),
    ]
    assert letter.key_bytes() is None and letter.key_b64 is None


def test_dead_letter_message_header_is_cut_to_1_kib_on_a_character() -> None:
    message = "é" * 2000  # 4000 UTF-8 bytes
    letter = DeadLetter.build(b"x", b"k", "t", 0, 0, _error(message=message))
    header = dict(letter.headers())["error.message"]
    assert len(header) <= 1024
    assert header.decode("utf-8") == "é" * 512
    assert letter.error_message == message  # the value keeps up to 4096 characters


def test_dead_letter_null_value_is_a_tombstone() -> None:
    with pytest.raises(InvalidRecord) as info:
        validate(None)
    letter = DeadLetter.build(None, b"id", "t", 0, 7, info.value)
    assert letter.payload_b64 == "" and letter.payload_bytes() == b""
    assert letter.error_detail["_payload"] == {"null": True}
    assert DeadLetter.loads(letter.dumps()) == letter


def test_dead_letter_for_every_kind_is_json_and_round_trips() -> None:
    feat = feature("nc72934355")
    feat["properties"]["mag"] = 99
    samples = {
        "empty": b"",
        "too_large": b"[" + b" " * 2000 + b"]",
        "not_utf8": b"\xff",
        "not_json": b"{",
        "too_deep": b"[" * 40 + b"]" * 40,
        "not_object": b"[]",
        "schema": encode(envelope(feat)),
    }
    for kind, payload in samples.items():
        with pytest.raises(InvalidRecord) as info:
            validate(payload, max_bytes=1500)
        assert info.value.kind == kind
        letter = DeadLetter.build(payload, b"k", "raw", 0, 1, info.value, now=NOW)
        again = DeadLetter.loads(letter.dumps())
        assert again == letter
        assert again.payload_bytes() == payload
        assert again.error_kind == kind
    assert again.error_detail["feature"]["properties"]["mag"]


def test_dead_letter_above_the_cap_keeps_a_prefix_and_a_hash() -> None:
    payload = bytes(range(256)) * (DEAD_LETTER_KEEP_BYTES // 256 + 10)
    letter = DeadLetter.build(payload, b"k", "raw", 0, 1, _error("too_large"))
    assert letter.is_truncated()
    info = letter.error_detail["_payload"]
    assert info == {
        "truncated": True,
        "original_length": len(payload),
        "kept_bytes": DEAD_LETTER_TRUNCATED_PREFIX_BYTES,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    assert letter.payload_bytes() == payload[:DEAD_LETTER_TRUNCATED_PREFIX_BYTES]
    at_cap = payload[:DEAD_LETTER_KEEP_BYTES]
    whole = DeadLetter.build(at_cap, b"k", "raw", 0, 1, _error())
    assert whole.payload_bytes() == at_cap and not whole.is_truncated()


def test_dead_letter_custom_cap_and_long_key() -> None:
    letter = DeadLetter.build(
        b"0123456789", b"K" * 100, "raw", 0, 1, _error(), keep_bytes=4, key_keep_bytes=8
    )
    assert letter.payload_bytes() == b"0123"
    assert letter.key_bytes() == b"K" * 8
    assert letter.error_detail["_key"]["original_length"] == 100


def test_dead_letter_detail_is_made_json_safe_and_bounded() -> None:
    letter = DeadLetter.build(
        b"x", None, "raw", 0, 1, _error(detail={0: ["a"], "n": 2**70, "o": object()})
    )
    assert letter.error_detail["0"] == ["a"]
    assert letter.error_detail["n"] == str(2**70)
    assert letter.error_detail["o"].startswith("<object")
    assert DeadLetter.loads(letter.dumps()) == letter
    wrapped = DeadLetter.build(b"x", None, "raw", 0, 1, _error(detail=["x"]))
    assert wrapped.error_detail == {"detail": ["x"]}
    huge = DeadLetter.build(
        b"x", None, "raw", 0, 1, _error(detail={"k": "v" * 10 * ERROR_DETAIL_MAX_BYTES})
    )
    assert len(huge.error_detail["_truncated"]) == ERROR_DETAIL_MAX_BYTES


def test_dead_letter_text_with_lone_surrogates_still_serialises() -> None:
    letter = DeadLetter.build(b"x", None, "raw", 0, 1, _error("schema", "bad \ud800"))
    assert "\\ud800" in letter.error_message
    assert DeadLetter.loads(letter.dumps()) == letter


def test_worst_case_dead_letter_fits_the_bound_and_kafka_default() -> None:
    bound = dead_letter_size_bound()
    assert bound < 1_000_000  # Kafka's default message.max.bytes is 1,048,588
    control = "\x01" * 10_000
    letter = DeadLetter.build(
        b"\x00" * (DEAD_LETTER_KEEP_BYTES),
        b"\x01" * 100_000,
        "t" * 249,
        2**31 - 1,
        2**63 - 1,
        _error("schema", control, {"k": '"\\' * ERROR_DETAIL_MAX_BYTES}),
    )
    assert len(letter.dumps()) <= bound
    assert DeadLetter.loads(letter.dumps()) == letter


def test_payload_b64_is_standard_base64() -> None:
    letter = DeadLetter.build(b"\xfb\xff", None, "raw", 0, 1, _error())
    assert letter.payload_b64 == base64.b64encode(b"\xfb\xff").decode()
