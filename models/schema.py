"""Marshmallow schemas that validate and normalise a raw USGS GeoJSON feature."""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load
from marshmallow.utils import missing

__all__ = [
    "INT32_MAX",
    "MAX_EPOCH_FUTURE_MS",
    "MAX_LENGTHS",
    "MIN_EPOCH_MS",
    "EnvelopeSchema",
    "FeatureSchema",
    "GeometrySchema",
    "PropertiesSchema",
    "fast_load_envelope",
    "flatten_feature",
    "json_type",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Earliest accepted ``time``/``updated``: 1900-01-01T00:00:00Z in epoch milliseconds.
#: (Instrumental seismology starts around then; USGS catalogue events are later.)
MIN_EPOCH_MS = -2_208_988_800_000
#: Latest accepted ``time``/``updated``: the validator's clock plus one day, so clock
#: skew between USGS and us never rejects a fresh event but a garbage date does.
MAX_EPOCH_FUTURE_MS = 86_400_000
#: Range of a PostgreSQL ``integer`` column: integer properties must fit in it.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: Maximum length in characters of every string the schema accepts (the longest
#: value in the real captures is 109 characters; these leave ample room).
MAX_LENGTHS: dict[str, int] = {
    "id": 128,
    "place": 512,
    "title": 512,
    "url": 2048,
    "detail": 2048,
    "source_url": 2048,
    "ids": 4096,
    "sources": 4096,
    "types": 4096,
    "net": 64,
    "code": 128,
    "mag_type": 32,
    "status": 32,
    "event_type": 64,
    "alert": 32,
}

T = TypeVar("T")


def _now_ms() -> int:
    """The validator's clock in epoch milliseconds (a function so tests can pin it)."""
    return int(_time.time() * 1000)


def _show(value: Any) -> str:
    """A short, safe rendering of an offending value for an error message."""
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    if isinstance(value, int):
        if -(10**15) < value < 10**15:
            return str(value)
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "..."
        return repr(text)
    return f"a value of type {json_type(value)}"


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _fmt(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _check_range(number: float, minimum: float | None, maximum: float | None) -> None:
    """Raise unless ``minimum <= number <= maximum`` (exact for ints of any size)."""
    if (minimum is not None and number < minimum) or (
        maximum is not None and number > maximum
    ):
        low = "-inf" if minimum is None else _fmt(minimum)
        high = "inf" if maximum is None else _fmt(maximum)
        raise ValidationError(f"Must be between {low} and {high}; got {_show(number)}.")


class _StrictField(fields.Field[T]):
    """A field whose checks all live in ``convert`` (no validators, no hooks).

    ``fast_load_envelope`` calls ``convert`` directly, which is what makes the fast
    path and marshmallow's ``load`` give the same answer.
    """

    def convert(self, value: Any) -> T:
        """Check and normalise a non-null ``value`` or raise ``ValidationError``."""
        raise NotImplementedError

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Mapping[str, Any] | None,
        **kwargs: Any,
    ) -> T:
        return self.convert(value)


class Float(_StrictField[float]):
    """A finite JSON number (integers accepted, booleans refused) in a closed range."""

    def __init__(
        self,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any) -> float:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise ValidationError(f"Must be a finite number; got {_show(value)}.")
        elif kind is not int:
            raise ValidationError(f"Must be a number, not {json_type(value)}.")
        _check_range(value, self.minimum, self.maximum)
        try:
            return float(value)
        except OverflowError as exc:  # an int too large for a float, with no bounds
            raise ValidationError(f"Number too large: {_show(value)}.") from exc


class Integer(_StrictField[int]):
    """A JSON integer (or an integral float such as ``5.0``) in a closed range."""

    def __init__(
        self, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any) -> int:
        kind = type(value)
        if kind is float:
            if not (math.isfinite(value) and value.is_integer()):
                raise ValidationError(f"Must be an integer; got {_show(value)}.")
        elif kind is not int:
            raise ValidationError(f"Must be an integer, not {json_type(value)}.")
        _check_range(value, self.minimum, self.maximum)
        return int(value)


class EpochMillis(_StrictField[datetime]):
    """Epoch milliseconds from 1900-01-01 to now + 1 day -> tz-aware UTC datetime."""

    def convert(self, value: Any) -> datetime:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise ValidationError(f"Must be a finite number; got {_show(value)}.")
        elif kind is not int:
            raise ValidationError(
                f"Must be epoch milliseconds (a number), not {json_type(value)}."
            )
        high = _now_ms() + MAX_EPOCH_FUTURE_MS
        if not MIN_EPOCH_MS <= value <= high:
            raise ValidationError(
                "Must be epoch milliseconds between 1900-01-01 and now + 1 day; "
                f"got {_show(value)}."
            )
        return EPOCH + timedelta(milliseconds=value)


class String(_StrictField[str]):
    """A bounded string without NUL characters or lone surrogates."""

    def __init__(
        self,
        *,
        max_length: int,
        non_blank: bool = False,
        lower: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.non_blank = non_blank
        self.lower = lower

    def convert(self, value: Any) -> str:
        if type(value) is not str:
            raise ValidationError(f"Must be a string, not {json_type(value)}.")
        if self.lower:
            value = value.lower()
        if len(value) > self.max_length:
            raise ValidationError(
                f"Longer than {self.max_length} characters ({len(value)})."
            )
        if self.non_blank and not value.strip():
            raise ValidationError("Must not be empty or blank.")
        if "\x00" in value:
            raise ValidationError("Must not contain NUL characters.")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValidationError(
                    "Must not contain lone surrogates (invalid Unicode)."
                ) from exc
        return value


class Constant(_StrictField[str]):
    """A string that must equal one value, e.g. GeoJSON ``"type": "Point"``."""

    def __init__(self, constant: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.constant = constant

    def convert(self, value: Any) -> str:
        if value != self.constant or type(value) is not str:
            raise ValidationError(f"Must be {self.constant!r}; got {_show(value)}.")
        return self.constant


class TsunamiFlag(_StrictField[bool]):
    """USGS ``tsunami``: 0 or 1 (JSON true/false also accepted) -> bool."""

    def convert(self, value: Any) -> bool:
        if type(value) is bool:
            return value
        if type(value) is int and value in (0, 1):
            return value == 1
        raise ValidationError(f"Must be 0 or 1; got {_show(value)}.")


class UtcDateTime(_StrictField[datetime]):
    """An ISO-8601 timestamp with a UTC offset (``Z`` or ``+hh:mm``) -> UTC datetime."""

    def convert(self, value: Any) -> datetime:
        if type(value) is not str:
            raise ValidationError(
                f"Must be an ISO-8601 string, not {json_type(value)}."
            )
        if len(value) > 64:
            raise ValidationError("Not a valid ISO-8601 timestamp (too long).")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(
                f"Not a valid ISO-8601 timestamp: {_show(value)}."
            ) from exc
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValidationError("Timestamp must carry a UTC offset (e.g. 'Z').")
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00
            raise ValidationError(f"Timestamp out of range: {_show(value)}.") from exc


#: (key, minimum, maximum) of the three GeoJSON position members, in order.
POSITION_AXES: tuple[tuple[str, float, float], ...] = (
    ("longitude", -180.0, 180.0),
    ("latitude", -90.0, 90.0),
    ("depth", -10.0, 1000.0),
)


class Position(_StrictField[tuple[float, float, float]]):
    """GeoJSON coordinates ``[longitude, latitude, depth_km]``, each range-checked."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axes = [
            (name, Float(minimum=low, maximum=high))
            for name, low, high in POSITION_AXES
        ]

    def convert(self, value: Any) -> tuple[float, float, float]:
        if type(value) is not list and type(value) is not tuple:
            raise ValidationError(
                "Must be an array [longitude, latitude, depth], "
                f"not {json_type(value)}."
            )
        if len(value) != 3:
            raise ValidationError(
                "Must be an array of exactly 3 numbers [longitude, latitude, depth]; "
                f"got {len(value)} elements."
            )
        errors: dict[str, list[str]] = {}
        out: list[float] = []
        for (name, axis), item in zip(self.axes, value, strict=True):
            try:
                out.append(axis.convert(item))
            except ValidationError as exc:
                errors[name] = _messages(exc)
        if errors:
            raise ValidationError(errors)
        return (out[0], out[1], out[2])


def _messages(exc: ValidationError) -> list[str]:
    messages = exc.messages
    if isinstance(messages, list):
        return [str(m) for m in messages]
    return [str(messages)]


class _Lenient(Schema):
    """Unknown keys are ignored: the feed adds properties over time."""

    class Meta:
        unknown = EXCLUDE


class PropertiesSchema(_Lenient):
    """``feature.properties``; attribute names are the ``Quake`` field names."""

    time = EpochMillis(required=True)
    updated = EpochMillis(required=True)
    magnitude = Float(data_key="mag", minimum=-2.0, maximum=10.0, load_default=None)
    mag_type = String(
        data_key="magType", max_length=MAX_LENGTHS["mag_type"], load_default=None
    )
    place = String(max_length=MAX_LENGTHS["place"], load_default=None)
    status = String(max_length=MAX_LENGTHS["status"], lower=True, load_default=None)
    event_type = String(
        data_key="type", max_length=MAX_LENGTHS["event_type"], load_default=None
    )
    tsunami = TsunamiFlag(load_default=None)
    significance = Integer(data_key="sig", minimum=0, load_default=None)
    url = String(max_length=MAX_LENGTHS["url"], load_default=None)
    felt = Integer(minimum=0, load_default=None)
    cdi = Float(minimum=0.0, maximum=12.0, load_default=None)
    mmi = Float(minimum=0.0, maximum=12.0, load_default=None)
    alert = String(max_length=MAX_LENGTHS["alert"], load_default=None)
    net = String(max_length=MAX_LENGTHS["net"], load_default=None)
    code = String(max_length=MAX_LENGTHS["code"], load_default=None)
    title = String(max_length=MAX_LENGTHS["title"], load_default=None)
    # Validated (a wrong type or absurd value is rejected) but not kept in Quake.
    tz = Integer(minimum=-1440, maximum=1440, load_default=None)
    detail = String(max_length=MAX_LENGTHS["detail"], load_default=None)
    ids = String(max_length=MAX_LENGTHS["ids"], load_default=None)
    sources = String(max_length=MAX_LENGTHS["sources"], load_default=None)
    types = String(max_length=MAX_LENGTHS["types"], load_default=None)
    nst = Integer(minimum=0, load_default=None)
    dmin = Float(minimum=0.0, maximum=360.0, load_default=None)
    rms = Float(minimum=0.0, maximum=10_000.0, load_default=None)
    gap = Float(minimum=0.0, maximum=360.0, load_default=None)


class GeometrySchema(_Lenient):
    """``feature.geometry``: a GeoJSON Point with a depth."""

    type = Constant("Point", required=True)
    coordinates = Position(required=True)


#: Properties copied into the flat result (the rest are only validated).
KEPT_PROPERTIES: tuple[str, ...] = (
    "time",
    "updated",
    "magnitude",
    "mag_type",
    "place",
    "status",
    "event_type",
    "tsunami",
    "significance",
    "url",
    "felt",
    "cdi",
    "mmi",
    "alert",
    "net",
    "code",
    "title",
)


def flatten_feature(data: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a loaded feature into the flat keyword arguments of ``Quake``."""
    props = data["properties"]
    longitude, latitude, depth = data["geometry"]["coordinates"]
    flat: dict[str, Any] = {"id": data["id"]}
    for name in KEPT_PROPERTIES:
        flat[name] = props[name]
    flat["longitude"] = longitude
    flat["latitude"] = latitude
    flat["depth"] = depth
    return flat


class FeatureSchema(_Lenient):
    """A raw GeoJSON feature; ``load`` returns the flat ``Quake`` keyword arguments.

    Rules (see also the field classes): ``id`` a non-blank string of at most 128
    characters; ``properties.time``/``updated`` epoch ms in [1900-01-01,
    now + 1 day] -> UTC datetimes; ``geometry`` a Point ``[lon -180..180,
    lat -90..90, depth -10..1000 km]``; ``mag`` nullable in [-2, 10]; ``status``
    lower-cased; numbers may be written as integers but never as booleans, strings,
    NaN or Infinity; every
    optional property may be null or absent; strings are length-bounded and free of
    NUL/lone surrogates (PostgreSQL refuses both); unknown properties are ignored.
    """

    type = Constant("Feature", load_default="Feature")
    id = String(required=True, non_blank=True, max_length=MAX_LENGTHS["id"])
    properties = fields.Nested(PropertiesSchema, required=True)
    geometry = fields.Nested(GeometrySchema, required=True)

    @post_load
    def _flatten(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return flatten_feature(data)


class EnvelopeSchema(_Lenient):
    """The raw-topic value ``{"feature": ..., "fetched_at": iso, "source_url": str}``.

    ``load`` returns the flat ``Quake`` keyword arguments including ``fetched_at``
    and ``source_url`` (both nullable: a hand-injected message may lack them).
    """

    feature = fields.Nested(FeatureSchema, required=True)
    fetched_at = UtcDateTime(load_default=None)
    source_url = String(max_length=MAX_LENGTHS["source_url"], load_default=None)

    @post_load
    def _flatten(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return flatten_envelope(data)


def flatten_envelope(data: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a loaded envelope's flat feature with its fetch metadata."""
    flat = dict(data["feature"])
    flat["fetched_at"] = data["fetched_at"]
    flat["source_url"] = data["source_url"]
    return flat


# --- Fast path -------------------------------------------------------------------
#
# marshmallow's Schema.load costs ~100 us per feature (error store, hooks, nesting).
# The fast path walks the SAME field objects, calling their ``convert`` with the
# same missing/null semantics as ``Field.deserialize``; it returns ``None`` at the
# first problem and the caller then runs marshmallow for the per-field report.

_FieldStep = tuple[str, str, bool, bool, Any, Callable[[Any], Any]]


class _Plan:
    """The compiled walk of one schema: field steps and an optional post_load."""

    __slots__ = ("finish", "steps")

    def __init__(
        self,
        steps: list[_FieldStep],
        finish: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> None:
        self.steps = steps
        self.finish = finish


_FINISHERS: dict[type[Schema], Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    FeatureSchema: flatten_feature,
    EnvelopeSchema: flatten_envelope,
}


def _compile(schema: Schema) -> _Plan:
    hooks = {
        kind: sorted(entry[0] for entry in entries)
        for kind, entries in getattr(schema, "_hooks", {}).items()
        if entries
    }
    expected = {"post_load": ["_flatten"]} if type(schema) in _FINISHERS else {}
    if hooks != expected:
        raise TypeError(f"{type(schema).__name__}: hooks {hooks} break the fast path")
    steps: list[_FieldStep] = []
    for name, field in schema.load_fields.items():
        if field.validators or field.pre_load or field.post_load:
            raise TypeError(f"{type(schema).__name__}.{name}: use convert(), not hooks")
        key = field.data_key or name
        convert: Callable[[Any], Any]
        if isinstance(field, fields.Nested):
            convert = _nested_converter(_compile(field.schema))
        elif isinstance(field, _StrictField):
            convert = field.convert
        else:
            raise TypeError(f"{type(schema).__name__}.{name}: not a strict field")
        steps.append(
            (key, name, field.required, field.allow_none, field.load_default, convert)
        )
    return _Plan(steps, _FINISHERS.get(type(schema)))


class _Invalid(Exception):
    """Internal: the fast path gives up; marshmallow will explain why."""


def _nested_converter(plan: _Plan) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is not dict:
            raise _Invalid
        return _run(plan, value)

    return convert


def _run(plan: _Plan, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name, required, allow_none, default, convert in plan.steps:
        value = data.get(key, missing)
        if value is missing:
            if required:
                raise _Invalid
            out[name] = default
        elif value is None:
            if not allow_none:
                raise _Invalid
            out[name] = None
        else:
            try:
                out[name] = convert(value)
            except ValidationError as exc:
                raise _Invalid from exc
    return plan.finish(out) if plan.finish is not None else out


ENVELOPE_SCHEMA = EnvelopeSchema()
_ENVELOPE_PLAN = _compile(ENVELOPE_SCHEMA)


def fast_load_envelope(data: Any) -> dict[str, Any] | None:
    """``EnvelopeSchema().load(data)`` when valid, else ``None`` (no error report)."""
    if type(data) is not dict:
        return None
    try:
        return _run(_ENVELOPE_PLAN, data)
    except _Invalid:
        return None
