"""Bad raw messages: each fails with its expected error kind and names the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from models import schema
from models.validation import error_kinds, json_depth_exceeds, validate_raw
from streamapp.exceptions import InvalidRecord
from tests.unit.models.support import (
    MAX_BYTES,
    detail_at,
    encode,
    envelope,
    feature,
    validate,
)

DELETE = object()
BASE_ID = "nc72934355"  # all_hour_2017-12-03, every property filled in or null


def mutated(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """The base envelope with ``value`` put at ``path`` (or the key deleted)."""
    env = envelope(feature(BASE_ID))
    node: Any = env
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return env


def _invalid(value: Any, **kwargs: Any) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as info:
        validate(value, **kwargs)
    exc = info.value
    assert exc.kind in error_kinds()
    json.dumps(exc.detail)  # always JSON-serialisable
    return exc


F = ("feature",)
P = ("feature", "properties")
G = ("feature", "geometry")
C = ("feature", "geometry", "coordinates")

# (case id, path to change, new value, field path expected in the detail)
SCHEMA_CASES: list[tuple[str, tuple[Any, ...], Any, tuple[str, ...]]] = [
    ("id missing", (*F, "id"), DELETE, (*F, "id")),
    ("id empty", (*F, "id"), "", (*F, "id")),
    ("id blank", (*F, "id"), "   ", (*F, "id")),
    ("id number", (*F, "id"), 72934355, (*F, "id")),
    ("id null", (*F, "id"), None, (*F, "id")),
    ("id too long", (*F, "id"), "x" * 129, (*F, "id")),
    ("id with NUL", (*F, "id"), "nc\x00", (*F, "id")),
    ("feature type", (*F, "type"), "FeatureCollection", (*F, "type")),
    ("properties missing", P, DELETE, P),
    ("properties null", P, None, P),
    ("properties array", P, [], P),
    ("time missing", (*P, "time"), DELETE, (*P, "time")),
    ("time null", (*P, "time"), None, (*P, "time")),
    ("time string", (*P, "time"), "1512342790490", (*P, "time")),
    ("time bool", (*P, "time"), True, (*P, "time")),
    ("time before 1900", (*P, "time"), -2_208_988_800_001, (*P, "time")),
    ("time year 9999", (*P, "time"), 253_402_300_799_000, (*P, "time")),
    ("time seconds not ms", (*P, "time"), 10**20, (*P, "time")),
    ("updated ISO string", (*P, "updated"), "2017-12-03T23:14:49Z", (*P, "updated")),
    ("updated missing", (*P, "updated"), DELETE, (*P, "updated")),
    ("mag too big", (*P, "mag"), 10.5, (*P, "mag")),
    ("mag too small", (*P, "mag"), -2.01, (*P, "mag")),
    ("mag bool", (*P, "mag"), True, (*P, "mag")),
    ("mag string", (*P, "mag"), "1.93", (*P, "mag")),
    ("mag array", (*P, "mag"), [1.93], (*P, "mag")),
    ("status number", (*P, "status"), 1, (*P, "status")),
    ("status too long", (*P, "status"), "a" * 33, (*P, "status")),
    ("place lone surrogate", (*P, "place"), "\ud800 Anderson", (*P, "place")),
    ("place too long", (*P, "place"), "p" * 513, (*P, "place")),
    ("place object", (*P, "place"), {"name": "x"}, (*P, "place")),
    ("tsunami 2", (*P, "tsunami"), 2, (*P, "tsunami")),
    ("tsunami string", (*P, "tsunami"), "0", (*P, "tsunami")),
    ("sig negative", (*P, "sig"), -1, (*P, "sig")),
    ("sig fraction", (*P, "sig"), 1.5, (*P, "sig")),
    ("sig beyond int32", (*P, "sig"), 2**31, (*P, "sig")),
    ("sig bool", (*P, "sig"), False, (*P, "sig")),
    ("felt bool", (*P, "felt"), True, (*P, "felt")),
    ("cdi 13", (*P, "cdi"), 13, (*P, "cdi")),
    ("mmi string", (*P, "mmi"), "VI", (*P, "mmi")),
    ("tz string", (*P, "tz"), "-480", (*P, "tz")),
    ("tz out of range", (*P, "tz"), 100_000, (*P, "tz")),
    ("gap over 360", (*P, "gap"), 400, (*P, "gap")),
    ("nst fraction", (*P, "nst"), 3.5, (*P, "nst")),
    ("dmin negative", (*P, "dmin"), -0.1, (*P, "dmin")),
    ("magType number", (*P, "magType"), 5, (*P, "magType")),
    ("event type array", (*P, "type"), ["earthquake"], (*P, "type")),
    ("url too long", (*P, "url"), "https://x/" + "a" * 2048, (*P, "url")),
    ("ids number", (*P, "ids"), 1, (*P, "ids")),
    ("geometry missing", G, DELETE, G),
    ("geometry null", G, None, G),
    ("geometry string", G, "POINT(1 2)", G),
    ("geometry polygon", (*G, "type"), "Polygon", (*G, "type")),
    ("geometry type missing", (*G, "type"), DELETE, (*G, "type")),
    ("coordinates missing", C, DELETE, C),
    ("coordinates null", C, None, C),
    ("coordinates object", C, {"lon": 1}, C),
    ("coordinates 2 numbers", C, [-122.1, 40.3], C),
    ("coordinates 4 numbers", C, [-122.1, 40.3, 7.9, 0], C),
    ("longitude 181", (*C, 0), 181, (*C, "longitude")),
    ("longitude -180.5", (*C, 0), -180.5, (*C, "longitude")),
    ("latitude -91", (*C, 1), -91, (*C, "latitude")),
    ("latitude 90.01", (*C, 1), 90.01, (*C, "latitude")),
    ("depth 1001", (*C, 2), 1001, (*C, "depth")),
    ("depth -10.5", (*C, 2), -10.5, (*C, "depth")),
    ("longitude bool", (*C, 0), True, (*C, "longitude")),
    ("latitude string", (*C, 1), "40.3", (*C, "latitude")),
    ("depth null", (*C, 2), None, (*C, "depth")),
    ("fetched_at garbage", ("fetched_at",), "yesterday", ("fetched_at",)),
    ("fetched_at naive", ("fetched_at",), "2024-05-31T23:30:00", ("fetched_at",)),
    ("fetched_at number", ("fetched_at",), 1717198200, ("fetched_at",)),
    ("source_url number", ("source_url",), 5, ("source_url",)),
]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [case[1:] for case in SCHEMA_CASES],
    ids=[case[0] for case in SCHEMA_CASES],
)
def test_schema_errors_name_the_field(
    path: tuple[Any, ...], value: Any, field: tuple[str, ...]
) -> None:
    exc = _invalid(encode(mutated(path, value)))
    assert exc.kind == "schema"
    messages = detail_at(exc.detail, field)
    assert messages, exc.detail
    assert ".".join(field[:2]) in exc.message


def test_infinity_from_overflowing_literal_is_a_schema_error() -> None:
    text = encode(envelope(feature(BASE_ID))).replace(b'"mag": 1.93', b'"mag": 1e400')
    exc = _invalid(text)
    assert exc.kind == "schema"
    assert "finite" in detail_at(exc.detail, ("feature", "properties", "mag"))[0]


def test_several_bad_fields_are_all_reported() -> None:
    env = mutated((*P, "mag"), 99)
    env["feature"]["geometry"]["coordinates"][1] = 99
    env["feature"]["id"] = ""
    exc = _invalid(encode(env))
    assert exc.detail["feature"]["properties"]["mag"]
    assert exc.detail["feature"]["geometry"]["coordinates"]["latitude"]
    assert exc.detail["feature"]["id"]


def test_unknown_properties_and_keys_are_ignored() -> None:
    env = mutated((*P, "brand_new_field"), {"nested": [1, 2, {"x": None}]})
    env["feature"]["bbox"] = [1, 2, 3]
    env["feature"]["geometry"]["crs"] = "whatever"
    env["producer_version"] = 7
    assert validate(encode(env)).id == BASE_ID


def test_absent_and_null_optional_properties_are_none() -> None:
    feat = feature(BASE_ID)
    feat["properties"] = {"time": 1512342790490, "updated": 1512342889220}
    feat.pop("type")
    quake = validate(encode(envelope(feat, fetched_at=None, source_url=None)))
    assert quake.magnitude is None and quake.status is None and quake.tsunami is None
    assert quake.fetched_at is None and quake.source_url is None
    env = envelope(feature(BASE_ID))
    del env["fetched_at"], env["source_url"]
    assert validate(encode(env)).fetched_at is None


def test_every_nullable_property_may_be_null() -> None:
    feat = feature(BASE_ID)
    for key in feat["properties"]:
        if key not in ("time", "updated"):
            feat["properties"][key] = None
    quake = validate(encode(envelope(feat)))
    assert quake.magnitude is None and quake.title is None


def test_integral_float_accepted_for_integers_and_time() -> None:
    env = mutated((*P, "sig"), 57.0)
    env["feature"]["properties"]["time"] = 1512342790490.5
    quake = validate(encode(env))
    assert quake.significance == 57 and type(quake.significance) is int
    assert quake.time.microsecond == 490500


def test_tsunami_json_booleans_accepted() -> None:
    assert validate(encode(mutated((*P, "tsunami"), True))).tsunami is True
    assert validate(encode(mutated((*P, "tsunami"), 1))).tsunami is True


def test_boundaries_are_inclusive() -> None:
    env = mutated((*P, "mag"), -2)
    env["feature"]["geometry"]["coordinates"] = [-180, 90, 1000]
    quake = validate(encode(env))
    assert (quake.magnitude, quake.longitude, quake.latitude, quake.depth) == (
        -2.0,
        -180.0,
        90.0,
        1000.0,
    )
    env["feature"]["geometry"]["coordinates"] = [180, -90, -10]
    env["feature"]["properties"]["mag"] = 10
    env["feature"]["properties"]["time"] = -2_208_988_800_000
    assert validate(encode(env)).depth == -10.0


def test_future_bound_is_now_plus_one_day(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_717_198_200_000
    monkeypatch.setattr(schema, "_now_ms", lambda: now)
    day = 86_400_000
    assert validate(encode(mutated((*P, "updated"), now + day))).updated
    exc = _invalid(encode(mutated((*P, "updated"), now + day + 1)))
    assert detail_at(exc.detail, (*P, "updated"))


def test_status_lower_cased_and_fetched_at_offset_normalised() -> None:
    env = mutated((*P, "status"), "ReViEwEd")
    env["fetched_at"] = "2024-06-01T01:30:00.5+02:00"
    quake = validate(encode(env))
    assert quake.status == "reviewed"
    assert quake.fetched_at is not None
    assert quake.fetched_at.isoformat() == "2024-05-31T23:30:00.500000+00:00"


# --- Errors before the schema ---------------------------------------------------


def test_error_kinds_are_the_contract() -> None:
    assert error_kinds() == (
        "empty",
        "too_large",
        "not_utf8",
        "not_json",
        "too_deep",
        "not_object",
        "schema",
    )


GOOD = encode(envelope(feature(BASE_ID)))

RAW_CASES: list[tuple[str, Any, str]] = [
    ("null value", None, "empty"),
    ("empty bytes", b"", "empty"),
    ("invalid utf-8", b'{"feature": "\xff"}', "not_utf8"),
    ("latin-1", '{"feature": "Zürich"}'.encode("latin-1"), "not_utf8"),
    ("utf-16", '{"feature": {}}'.encode("utf-16"), "not_utf8"),
    ("truncated", GOOD[:-10], "not_json"),
    ("trailing garbage", GOOD + b" x", "not_json"),
    ("two objects", GOOD + GOOD, "not_json"),
    ("whitespace only", b"   \n", "not_json"),
    ("NaN literal", b'{"feature": NaN}', "not_json"),
    ("Infinity literal", b'{"feature": {"mag": Infinity}}', "not_json"),
    ("-Infinity literal", b"[-Infinity]", "not_json"),
    ("NaN in a real feature", GOOD.replace(b'"mag": 1.93', b'"mag": NaN'), "not_json"),
    ("BOM", b"\xef\xbb\xbf" + GOOD, "not_json"),
    ("single quotes", b"{'feature': {}}", "not_json"),
    ("5000-digit integer", b'{"feature": ' + b"9" * 5000 + b"}", "not_json"),
    ("array", b"[1, 2]", "not_object"),
    ("string", b'"hello"', "not_object"),
    ("number", b"42", "not_object"),
    ("null", b"null", "not_object"),
    ("true", b"true", "not_object"),
    ("bare feature, no envelope", encode(feature(BASE_ID)), "not_object"),
    ("feature is an array", encode({"feature": [feature(BASE_ID)]}), "not_object"),
    ("feature is null", encode({"feature": None}), "not_object"),
    ("feature is a string", encode({"feature": "{}"}), "not_object"),
    ("33 levels", b"[" * 33 + b"]" * 33, "too_deep"),
]


@pytest.mark.parametrize(
    ("value", "kind"),
    [case[1:] for case in RAW_CASES],
    ids=[case[0] for case in RAW_CASES],
)
def test_raw_errors(value: Any, kind: str) -> None:
    assert _invalid(value).kind == kind


def test_not_object_names_the_envelope_field() -> None:
    exc = _invalid(encode(feature(BASE_ID)))
    assert exc.detail == {"feature": ["Missing envelope field."]}
    assert _invalid(b"[1]").detail == {"type": "array"}


def test_not_json_says_where() -> None:
    exc = _invalid(b'{"feature": {"id": "x",}}')
    assert exc.detail["line"] == 1 and exc.detail["column"] == 24


@pytest.mark.timeout(60)
def test_100k_levels_of_nesting_are_too_deep_without_recursion() -> None:
    for text in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ):
        exc = _invalid(text)
        assert exc.kind == "too_deep"
        assert exc.detail["max_depth"] == 32
        assert exc.detail["depth"] > 32
    unbalanced = b"[" * 100_000  # not JSON either: depth is checked first
    assert _invalid(unbalanced).kind == "too_deep"


def test_depth_limit_is_exact() -> None:
    env = envelope(feature(BASE_ID))
    env["feature"]["properties"]["extra"] = [[[[[[[[[[1]]]]]]]]]]  # 3 + 10 = depth 13
    assert validate(encode(env), max_depth=13).id == BASE_ID
    assert _invalid(encode(env), max_depth=12).kind == "too_deep"


def test_brackets_inside_strings_do_not_count() -> None:
    env = mutated((*P, "place"), '[[[[{{{{ \\" ]]]] ' + "[" * 100)
    assert validate(encode(env)).place is not None
    exc = _invalid(encode({"feature": "[" * 100_000}))
    assert exc.kind == "not_object"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", None),
        ("[]", 1),
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "]]]]"]', 1),
        ('["\\"[[[[\\\\"]', 1),
        ('["unterminated [[[[[[[', 1),
        ("]]]][[", None),  # malformed: json.loads reports it
    ],
)
def test_json_depth_exceeds_measures(text: str, depth: int | None) -> None:
    assert json_depth_exceeds(text, 0) == depth
    if depth is not None:
        assert json_depth_exceeds(text, depth) is None
        assert json_depth_exceeds(text, depth - 1) == depth


def test_five_mib_is_too_large_before_decoding() -> None:
    big = encode(mutated((*P, "place"), "x" * (5 * 1024 * 1024)))
    exc = _invalid(big)
    assert exc.kind == "too_large"
    assert exc.detail == {"size": len(big), "max_bytes": MAX_BYTES}
    assert _invalid(b"\xff" * (5 * 1024 * 1024)).kind == "too_large"  # not not_utf8
    assert _invalid(b"[" * (MAX_BYTES + 1)).kind == "too_large"  # not too_deep


def test_size_limit_is_exact() -> None:
    assert validate(GOOD, max_bytes=len(GOOD)).id == BASE_ID
    assert _invalid(GOOD, max_bytes=len(GOOD) - 1).kind == "too_large"


def test_non_bytes_values_are_invalid_records() -> None:
    assert validate(bytearray(GOOD)).id == BASE_ID
    assert validate(memoryview(GOOD)).id == BASE_ID
    assert _invalid(GOOD.decode()).kind == "not_utf8"
    assert _invalid(12345).kind == "not_utf8"


def test_unexpected_errors_become_invalid_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(data: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("models.validation.fast_load_envelope", boom)
    with pytest.raises(InvalidRecord) as info:
        validate_raw(GOOD, max_bytes=MAX_BYTES, max_depth=32)
    assert info.value.kind == "schema"
    assert "RuntimeError" in info.value.message


def test_recursion_error_with_a_huge_depth_limit_is_too_deep() -> None:
    text = b"[" * 200_000 + b"]" * 200_000
    exc = _invalid(text, max_depth=10**9)
    assert exc.kind == "too_deep"


def test_input_is_not_mutated() -> None:
    env = envelope(feature(BASE_ID))
    before = copy.deepcopy(env)
    validate(encode(env))
    assert env == before
