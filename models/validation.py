"""Turn raw-topic bytes into a ``Quake`` or an ``InvalidRecord`` with a reason."""

from __future__ import annotations

import json
import logging
import re
from itertools import accumulate
from typing import Any

from marshmallow import ValidationError

from models.records import Quake, quake_json
from models.schema import ENVELOPE_SCHEMA, fast_load_envelope, json_type
from streamapp.exceptions import InvalidRecord

__all__ = [
    "ERROR_KINDS",
    "error_kinds",
    "json_depth_exceeds",
    "validate_raw",
    "validate_raw_json",
    "validated_fields",
]

logger = logging.getLogger(__name__)

#: Every ``InvalidRecord.kind`` that ``validate_raw`` raises (contract order; the
#: depth check runs before ``json.loads``, so ``too_deep`` wins over ``not_json``).
ERROR_KINDS: tuple[str, ...] = (
    "empty",
    "too_large",
    "not_utf8",
    "not_json",
    "too_deep",
    "not_object",
    "schema",
)

# A JSON string (possibly unterminated: then it runs to the end of the text).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def error_kinds() -> tuple[str, ...]:
    """The error kinds of validation (``InvalidRecord.kind``)."""
    return ERROR_KINDS


def json_depth_exceeds(text: str, max_depth: int) -> int | None:
    """The nesting depth of JSON ``text`` if it exceeds ``max_depth``, else None.

    Depth counts open arrays/objects (``{}`` is 1, ``{"a": [1]}`` is 2). No
    recursion, so 100,000 levels cost milliseconds and no stack: brackets inside
    strings are removed with a regex, the rest are summed in C (``accumulate``).
    Malformed text is measured as well as it can be; ``json.loads`` judges it next.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return None  # cannot be deeper than the number of openers: the usual case
    if '"' in text:
        text = _STRING.sub("", text)
    depth = max(accumulate(map(_STEP.__getitem__, _BRACKET.findall(text))), default=0)
    return depth if depth > max_depth else None


class _ConstantLiteral(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in the JSON text (not JSON proper)."""


def _reject_constant(name: str) -> Any:
    raise _ConstantLiteral(f"{name} is not valid JSON")


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        raise InvalidRecord("not_utf8", "value is a str, expected bytes", {})
    raise InvalidRecord(
        "not_utf8", f"value is {type(value).__name__}, expected bytes", {}
    )


def _decode_json(data: bytes, max_depth: int) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(
            "not_utf8",
            f"invalid UTF-8 at byte {exc.start}: {exc.reason}",
            {"position": exc.start, "reason": exc.reason},
        ) from None
    depth = json_depth_exceeds(text, max_depth)
    if depth is not None:
        raise InvalidRecord(
            "too_deep",
            f"JSON nested {depth} levels deep, more than {max_depth}",
            {"depth": depth, "max_depth": max_depth},
        )
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRecord(
            "not_json",
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
            {"error": exc.msg, "line": exc.lineno, "column": exc.colno, "pos": exc.pos},
        ) from None
    except _ConstantLiteral as exc:
        raise InvalidRecord("not_json", str(exc), {"error": str(exc)}) from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        message = str(exc)[:200]
        raise InvalidRecord("not_json", message, {"error": message}) from None
    except RecursionError:  # only reachable when max_depth is set very high
        raise InvalidRecord(
            "too_deep",
            "JSON nested deeper than the parser's recursion limit",
            {"max_depth": max_depth},
        ) from None


def _envelope_fields(obj: Any) -> dict[str, Any]:
    if type(obj) is not dict:
        kind = json_type(obj)
        raise InvalidRecord(
            "not_object", f"JSON value is a {kind}, not an object", {"type": kind}
        )
    if "feature" not in obj:
        raise InvalidRecord(
            "not_object",
            "object has no 'feature' (expected the raw envelope "
            '{"feature": ..., "fetched_at": ..., "source_url": ...})',
            {"feature": ["Missing envelope field."]},
        )
    if type(obj["feature"]) is not dict:
        raise InvalidRecord(
            "not_object",
            "envelope 'feature' is not an object",
            {"feature": ["Not an object."]},
        )
    fast = fast_load_envelope(obj)
    if fast is not None:
        return fast
    try:
        loaded: dict[str, Any] = ENVELOPE_SCHEMA.load(obj)
    except ValidationError as exc:
        detail = _json_safe(exc.messages)
        raise InvalidRecord("schema", _summary(detail), detail) from None
    return loaded  # pragma: no cover - the fast path accepts everything valid


def _json_safe(messages: Any) -> dict[str, Any]:
    """marshmallow's messages with string keys (list indices become "0", "1"...)."""

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            return {str(key): convert(value) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [convert(item) for item in node]
        if node is None or isinstance(node, str | int | float | bool):
            return node
        return str(node)

    converted = convert(messages)
    return converted if isinstance(converted, dict) else {"_schema": converted}


def _summary(detail: dict[str, Any], limit: int = 3) -> str:
    """``feature.properties.mag: Must be ...; feature.id: ...`` (first few fields)."""
    parts: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list) and node and all(isinstance(m, str) for m in node):
            parts.append(f"{path}: {' '.join(node)}")
        else:
            parts.append(f"{path}: {node}")

    walk(detail, "")
    more = f" (+{len(parts) - limit} more)" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def validate_raw(
    value: bytes | None,
    *,
    max_bytes: int,
    max_depth: int,
    partition: int | None = None,
    offset: int | None = None,
) -> Quake:
    """Validate one raw-topic value (the fetch envelope) and build its ``Quake``.

    Checks, in order: ``empty`` (None or b""), ``too_large`` (more than
    ``max_bytes``, before decoding), ``not_utf8``, ``too_deep`` (nesting beyond
    ``max_depth``, measured without recursion), ``not_json`` (including NaN/Infinity
    literals and trailing data), ``not_object`` (not an object, no ``feature``
    object), ``schema`` (``detail`` = marshmallow's per-field messages rooted at the
    envelope, e.g. ``{"feature": {"properties": {"mag": [...]}}}``).
    ``partition``/``offset`` become ``raw_partition``/``raw_offset``.

    Raises only ``InvalidRecord``, whatever the input.
    """
    try:
        fields = validated_fields(value, max_bytes=max_bytes, max_depth=max_depth)
        return Quake(**fields, raw_partition=partition, raw_offset=offset)
    except InvalidRecord:
        raise
    except Exception as exc:  # a validator bug must not crash the agent
        raise _internal_error(exc) from exc


def validated_fields(
    value: bytes | None, *, max_bytes: int, max_depth: int
) -> dict[str, Any]:
    """The envelope's ``Quake`` fields (no Record), after every check of
    :func:`validate_raw`; raises only ``InvalidRecord`` for bad input.

    Example::

        fields = validated_fields(value, max_bytes=1 << 20, max_depth=32)
        fields["id"], fields["time"]  # "nc75013992", datetime(..., tzinfo=UTC)
    """
    if value is None:
        raise InvalidRecord("empty", "message value is null (tombstone)", {})
    data = _as_bytes(value)
    if not data:
        raise InvalidRecord("empty", "message value is empty", {})
    if len(data) > max_bytes:
        raise InvalidRecord(
            "too_large",
            f"message is {len(data)} bytes, more than {max_bytes}",
            {"size": len(data), "max_bytes": max_bytes},
        )
    return _envelope_fields(_decode_json(data, max_depth))


def _internal_error(exc: Exception) -> InvalidRecord:
    logger.exception("validator failed unexpectedly on a raw message")
    return InvalidRecord(
        "schema",
        f"internal validator error: {type(exc).__name__}",
        {"_schema": [f"Internal validator error: {type(exc).__name__}."]},
    )


def validate_raw_json(
    value: bytes | None,
    *,
    max_bytes: int,
    max_depth: int,
    partition: int | None = None,
    offset: int | None = None,
) -> tuple[str, bytes]:
    """:func:`validate_raw`, returning the event id and the clean topic's value.

    The same checks and errors; the value is the bytes ``Quake.dumps()`` writes,
    built without the Record where the fields already have their coerced types
    (:func:`models.records.quake_json`), else by the Record.
    """
    try:
        fields = validated_fields(value, max_bytes=max_bytes, max_depth=max_depth)
        data = quake_json(fields, partition=partition, offset=offset)
        if data is not None:
            return fields["id"], data
        quake = Quake(**fields, raw_partition=partition, raw_offset=offset)
        return quake.id, quake.dumps()
    except InvalidRecord:
        raise
    except Exception as exc:  # a validator bug must not crash the agent
        raise _internal_error(exc) from exc
