"""The idiomatic Quix peer's pieces without Kafka: verdicts, clean values, rows."""

from __future__ import annotations

from datetime import datetime

import pytest
from quixstreams.models.serializers import JSONDeserializer, JSONSerializer
from quixstreams.models.serializers.base import SerializationContext

from bench.generate import make_dataset
from bench.peer_quix_idiomatic import (
    check_raw,
    clean_value,
    dead_letter_row_from_value,
    dead_letter_value,
    quake_row_from_value,
)
from models.records import DeadLetter
from models.validation import validate_raw, validate_raw_json
from streamapp.exceptions import InvalidRecord
from streamapp.sinks import dead_letter_row, quake_row_from_json

LIMITS = {"max_bytes": 1024 * 1024, "max_depth": 32}
DATASET = make_dataset(600, seed=11, invalid_share=0.3)


def _kind(check: object, value: bytes | None) -> str | None:
    try:
        check(value, **LIMITS)  # type: ignore[operator]
    except InvalidRecord as exc:
        return exc.kind
    return None


def _through_quix_json(value: object) -> object:
    ctx = SerializationContext(topic="t", field="value")
    data = JSONSerializer()(value, ctx)
    assert isinstance(data, bytes)
    return JSONDeserializer()(data, ctx)


def _instant(value: object) -> object:
    if isinstance(value, str) and value[:4].isdigit() and "T" in value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def test_verdicts_match_the_project_validator_on_generated_data() -> None:
    kinds = [(_kind(check_raw, m.value), m.invalid) for m in DATASET.messages]
    assert {k for k, _ in kinds} >= {None, "schema", "not_json", "too_deep"}
    for message, (kind, _) in zip(DATASET.messages, kinds, strict=True):
        assert kind == _kind(validate_raw, message.value)
        assert kind == message.invalid


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"x" * (LIMITS["max_bytes"] + 1), "too_large"),
        (b"\xff{}", "not_utf8"),
        (b"[" * 40 + b"]" * 40, "too_deep"),
        (b'{"feature": NaN}', "not_json"),
        (b"{} trailing", "not_json"),
        (b"[1]", "not_object"),
        (b'{"feature": []}', "not_object"),
        (b'{"feature": {"id": ""}}', "schema"),
    ],
)
def test_bad_input_kinds(value: bytes | None, kind: str) -> None:
    assert _kind(check_raw, value) == kind == _kind(validate_raw, value)


def test_schema_error_names_the_fields() -> None:
    with pytest.raises(InvalidRecord) as caught:
        check_raw(b'{"feature": {"id": ""}}', **LIMITS)
    assert "feature." in caught.value.message
    assert "feature" in caught.value.detail


def test_clean_value_through_quix_json_gives_streamapps_row() -> None:
    valid = [m for m in DATASET.messages if m.invalid is None][:50]
    for i, message in enumerate(valid):
        fields = check_raw(message.value, **LIMITS)
        value = _through_quix_json(clean_value(fields, 2, i))
        assert isinstance(value, dict)
        row = quake_row_from_value(value, partition=1, offset=i)
        _, data = validate_raw_json(message.value, **LIMITS, partition=2, offset=i)
        expected = quake_row_from_json(data, partition=1, offset=i)
        assert expected is not None
        assert row.keys() == expected.keys()
        for name, got in row.items():
            assert _instant(got) == _instant(expected[name]), name


def test_dead_letter_value_round_trip_gives_the_same_row() -> None:
    error = InvalidRecord("not_json", "bad", {"error": "bad"})
    letter = DeadLetter.build(b"\xffraw", b"key", "raw-topic", 3, 7, error)
    value = _through_quix_json(dead_letter_value(letter))
    assert isinstance(value, dict)
    row = dead_letter_row_from_value(value, topic="dl", partition=0, offset=1)
    assert row == dead_letter_row(letter, topic="dl", partition=0, offset=1)
    assert row["payload"] == b"\xffraw" and row["source_offset"] == 7
