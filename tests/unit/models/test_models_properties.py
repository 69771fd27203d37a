"""Property tests: no input makes the validator raise anything but InvalidRecord."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from models.records import DeadLetter, Quake
from models.schema import ENVELOPE_SCHEMA, fast_load_envelope
from models.validation import error_kinds, validate_raw
from streamapp.exceptions import InvalidRecord
from tests.unit.models.support import MAX_BYTES, all_features, envelope

FEATURES = [feat for _, feat in all_features()]
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([0, 1, -1, 2**31, 2**63, -(2**63) - 1, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([-180.0, 180.0, 180.0000001, -90.0, 90.0, -10.0, 1000.0, 10.0])
    | st.sampled_from([-2.0, -2.0000001, 1e-300, 1.5e12, 1_717_197_452_540])
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "\x00", "\ud800", "Point", "Feature", "AUTOMATIC"])
    | st.sampled_from(["2024-05-31T23:30:00Z", "2024-05-31T23:30:00", "x" * 600])
)
jsonish = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

KEYS = sorted({key for feat in FEATURES for key in feat["properties"]})
PATHS: list[tuple[Any, ...]] = [
    ("feature",),
    ("fetched_at",),
    ("source_url",),
    ("feature", "id"),
    ("feature", "type"),
    ("feature", "properties"),
    ("feature", "geometry"),
    ("feature", "geometry", "type"),
    ("feature", "geometry", "coordinates"),
    ("feature", "geometry", "coordinates", 0),
    ("feature", "geometry", "coordinates", 1),
    ("feature", "geometry", "coordinates", 2),
    ("feature", "properties", "unknown_new_field"),
    *[("feature", "properties", key) for key in KEYS],
]
DELETE = "<delete>"


def _has(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and key < len(node)


def _apply(env: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = env
    for key in path[:-1]:
        if not _has(node, key):
            return  # an earlier mutation removed or replaced the parent
        node = node[key]
    last = path[-1]
    if value == DELETE:
        if _has(node, last):
            del node[last]
    elif isinstance(node, dict) or _has(node, last):
        node[last] = value


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A real feature's envelope with one to three paths replaced or deleted."""
    env = envelope(copy.deepcopy(draw(st.sampled_from(FEATURES))))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        _apply(env, path, draw(st.just(DELETE) | jsonish))
    return env


def _dumps(obj: Any) -> bytes | None:
    try:
        return json.dumps(obj).encode("utf-8", "surrogatepass")
    except ValueError:  # an integer beyond Python's 4300-digit str limit
        return None


def _check(value: bytes | None) -> None:
    try:
        quake = validate_raw(value, max_bytes=MAX_BYTES, max_depth=32)
    except InvalidRecord as exc:
        assert exc.kind in error_kinds()
        json.dumps(exc.detail, allow_nan=False)
        letter = DeadLetter.build(value, b"key", "raw", 0, 0, exc)
        assert DeadLetter.loads(letter.dumps()) == letter
    else:
        assert isinstance(quake, Quake)
        assert Quake.loads(quake.dumps()) == quake


@SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_invalid_record(value: bytes) -> None:
    _check(value)


@SETTINGS
@given(jsonish)
def test_arbitrary_json_raises_only_invalid_record(obj: Any) -> None:
    _check(_dumps(obj))
    _check(_dumps({"feature": obj}))


@SETTINGS
@given(mutated_envelopes())
def test_mutated_features_raise_only_invalid_record(env: dict[str, Any]) -> None:
    _check(_dumps(env))


@SETTINGS
@given(mutated_envelopes(), st.integers(min_value=0, max_value=2000), st.binary())
def test_corrupted_bytes_raise_only_invalid_record(
    env: dict[str, Any], cut: int, junk: bytes
) -> None:
    data = _dumps(env) or b""
    _check(data[:cut] + junk + data[cut:])


@SETTINGS
@given(mutated_envelopes())
def test_fast_path_agrees_with_marshmallow(env: dict[str, Any]) -> None:
    fast = fast_load_envelope(env)
    try:
        slow = ENVELOPE_SCHEMA.load(env)
    except ValidationError:
        assert fast is None
    else:
        assert fast == slow


@SETTINGS
@given(jsonish)
def test_fast_path_agrees_with_marshmallow_on_any_feature(obj: Any) -> None:
    env = envelope(obj)
    fast = fast_load_envelope(env)
    try:
        slow = ENVELOPE_SCHEMA.load(env)
    except ValidationError:
        assert fast is None
    else:
        assert fast == slow
