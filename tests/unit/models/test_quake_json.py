"""The clean value built without the Record equals the Record's, byte for byte."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.records import Quake, quake_json
from models.validation import validate_raw, validate_raw_json
from streamapp.exceptions import InvalidRecord
from streamapp.sinks import quake_row, quake_row_from_json
from tests.unit.models.support import (
    MAX_BYTES,
    MAX_DEPTH,
    all_features,
    encode,
    envelope,
)
from tests.unit.models.test_models_properties import (
    FEATURES,
    SETTINGS,
    mutated_envelopes,
)


def both_paths(value: bytes, partition: int = 3, offset: int = 77) -> None:
    """The fast path and the Record path agree: same outcome, same bytes, same row."""
    try:
        quake = validate_raw(
            value,
            max_bytes=MAX_BYTES,
            max_depth=MAX_DEPTH,
            partition=partition,
            offset=offset,
        )
    except InvalidRecord as expected:
        with pytest.raises(InvalidRecord) as caught:
            validate_raw_json(
                value,
                max_bytes=MAX_BYTES,
                max_depth=MAX_DEPTH,
                partition=partition,
                offset=offset,
            )
        assert caught.value.kind == expected.kind
        assert str(caught.value) == str(expected)
        return
    event_id, clean = validate_raw_json(
        value,
        max_bytes=MAX_BYTES,
        max_depth=MAX_DEPTH,
        partition=partition,
        offset=offset,
    )
    assert event_id == quake.id
    assert clean == quake.dumps()
    assert Quake.loads(clean) == quake
    record_row = quake_row(quake, partition=1, offset=9)
    fast_row = quake_row_from_json(clean, partition=1, offset=9)
    assert fast_row is None or as_values(fast_row) == record_row
    assert quake_row(Quake.loads(clean), partition=1, offset=9) == record_row


def as_values(row: dict[str, Any]) -> dict[str, Any]:
    """The sink's JSON row with its ISO-8601 texts as the datetimes PostgreSQL reads."""
    return {
        name: datetime.fromisoformat(value) if name in TIMES and value else value
        for name, value in row.items()
    }


TIMES = frozenset(("time", "updated", "fetched_at"))


@pytest.mark.parametrize(
    "feature", [f for _, f in all_features()], ids=lambda f: str(f.get("id"))
)
def test_every_captured_feature(feature: dict[str, Any]) -> None:
    both_paths(encode(envelope(feature)))


def test_the_fast_path_builds_the_captured_features() -> None:
    """Real features never need the Record: the fast path is the common path."""
    for _, feature in all_features():
        fields = {
            **Quake.loads(
                validate_raw(
                    encode(envelope(feature)), max_bytes=MAX_BYTES, max_depth=MAX_DEPTH
                ).dumps()
            ).asdict()
        }
        del fields["raw_partition"], fields["raw_offset"]
        assert quake_json(fields, partition=0, offset=1) is not None


@SETTINGS
@given(mutated_envelopes())
def test_generated_features(env: dict[str, Any]) -> None:
    try:
        value = encode(env)
    except ValueError:  # an integer beyond Python's str limit
        return
    both_paths(value)


@SETTINGS
@given(
    st.sampled_from(FEATURES),
    st.integers(min_value=0, max_value=2**31 - 1),
    st.integers(min_value=0, max_value=2**62),
)
def test_any_lineage(feature: dict[str, Any], partition: int, offset: int) -> None:
    both_paths(encode(envelope(copy.deepcopy(feature))), partition, offset)


T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)
REQUIRED = {
    "id": "a",
    "time": T0,
    "updated": T0,
    "longitude": 1.5,
    "latitude": 2.5,
    "depth": 3.5,
}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"depth": 3}, "an int where a float belongs (the Record coerces it)"),
        ({"time": T0.astimezone(timezone(timedelta(hours=2)))}, "not UTC"),
        ({"time": datetime(2024, 5, 31)}, "naive"),
        ({"felt": 2**64}, "beyond 64 bits"),
        ({"unknown": 1}, "a field the Record does not have"),
        ({"id": None}, "a required field missing"),
    ],
)
def test_the_record_decides_what_is_not_plain(change: dict[str, Any], why: str) -> None:
    fields = {**REQUIRED, **change}
    if fields["id"] is None:
        del fields["id"]
    assert quake_json(fields, partition=0, offset=0) is None, why


def test_plain_fields_give_the_records_bytes() -> None:
    fields = {**REQUIRED, "magnitude": 4.5, "tsunami": True, "felt": 12}
    expected = Quake(**fields, raw_partition=1, raw_offset=2).dumps()
    assert quake_json(fields, partition=1, offset=2) == expected
