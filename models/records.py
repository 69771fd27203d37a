"""Faust records of the pipeline: the clean earthquake and the dead letter."""

from __future__ import annotations

import base64
import hashlib
import json
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import faust
import orjson

from streamapp.exceptions import InvalidRecord
from streamapp.faust_ext.records import record_fields

__all__ = [
    "DEAD_LETTER_KEEP_BYTES",
    "DEAD_LETTER_KEY_KEEP_BYTES",
    "DEAD_LETTER_TRUNCATED_PREFIX_BYTES",
    "ERROR_HEADER_MAX_BYTES",
    "QUAKE_FIELDS",
    "DeadLetter",
    "Quake",
    "dead_letter_size_bound",
    "quake_json",
]

#: Payloads up to this many bytes are kept whole in a dead letter. Real features are
#: ~1.5 KB, so in practice every dead letter can be re-driven byte for byte. It is
#: half the raw-topic cap (settings.max_message_bytes, 1 MiB) on purpose: base64
#: grows data by 4/3, and a dead letter above the broker's and producer's default
#: 1 MiB message limit would be refused by Kafka and retried for ever.
DEAD_LETTER_KEEP_BYTES = 512 * 1024
#: Keys (event ids) up to this many bytes are kept whole.
DEAD_LETTER_KEY_KEEP_BYTES = 16 * 1024
#: Above its cap, only this prefix of a payload (or key) is kept, and
#: ``error_detail["_payload"]`` (or ``["_key"]``) records ``truncated: true``,
#: ``original_length``, ``kept_bytes`` and the ``sha256`` of the whole original.
DEAD_LETTER_TRUNCATED_PREFIX_BYTES = 64 * 1024
#: Bound of the ``error.message`` header (UTF-8 bytes, cut on a character boundary).
ERROR_HEADER_MAX_BYTES = 1024
#: Bound of ``DeadLetter.error_message`` (characters).
ERROR_MESSAGE_MAX_CHARS = 4096
#: Bound of ``DeadLetter.error_detail`` serialised as JSON (bytes); a larger detail
#: is replaced by ``{"_truncated": <its JSON text cut to this size>}``.
ERROR_DETAIL_MAX_BYTES = 64 * 1024


def _utc(value: datetime) -> datetime:
    """Normalise to tz-aware UTC (a naive datetime is taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Quake(faust.Record, serializer="json", coerce=True):
    """One validated earthquake (clean topic value; one ``earthquakes`` row).

    Datetimes are tz-aware UTC and serialise as ISO-8601 (``...Z``, microseconds
    kept). ``raw_partition``/``raw_offset`` locate the raw-topic message it came from.
    Required fields come first because Faust records, like dataclasses, cannot put a
    field without a default after one with a default.
    """

    id: str
    time: datetime
    updated: datetime
    longitude: float
    latitude: float
    depth: float
    magnitude: float | None = None
    mag_type: str | None = None
    place: str | None = None
    status: str | None = None
    event_type: str | None = None
    tsunami: bool | None = None
    significance: int | None = None
    url: str | None = None
    felt: int | None = None
    cdi: float | None = None
    mmi: float | None = None
    alert: str | None = None
    net: str | None = None
    code: str | None = None
    title: str | None = None
    fetched_at: datetime | None = None
    source_url: str | None = None
    raw_partition: int | None = None
    raw_offset: int | None = None

    def __post_init__(self) -> None:
        self.time = _utc(self.time)
        self.updated = _utc(self.updated)
        if self.fetched_at is not None:
            self.fetched_at = _utc(self.fetched_at)

    def to_row(self) -> dict[str, Any]:
        """Every field as a plain Python value (tz-aware UTC datetimes) for SQL."""
        return dict(self.asdict())


#: ``Quake`` field names in declaration order: the clean event's columns everywhere
#: (the sink's statement, the read API, the replay frames).
QUAKE_FIELDS: tuple[str, ...] = record_fields(Quake)


def _field_types(record: type[faust.Record]) -> dict[str, tuple[type, bool]]:
    """Each field's coerced type and whether it is required, from its annotation
    (``float | None``: a float, optional)."""
    types: dict[str, tuple[type, bool]] = {}
    for name, hint in typing.get_type_hints(record).items():
        if name not in QUAKE_FIELDS:
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        types[name] = (args[0], False) if args else (hint, True)
    return types


#: The exact Python type of each ``Quake`` field after coercion.
_QUAKE_FIELD_TYPES = _field_types(Quake)
_QUAKE_TYPES = {name: kind for name, (kind, _) in _QUAKE_FIELD_TYPES.items()}
_QUAKE_REQUIRED = frozenset(n for n, (_, req) in _QUAKE_FIELD_TYPES.items() if req)
#: What faust writes after a Record's fields (``Record.dumps``, metadata on).
_QUAKE_META = {"ns": f"{Quake.__module__}.{Quake.__qualname__}"}
#: faust-streaming's orjson options (``faust.utils.json.dumps``).
_FAUST_JSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
#: Integers orjson writes (faust's encoder refuses larger ones).
_INT_MIN = -9_223_372_036_854_775_808  # -(2**63)
_INT_MAX = 18_446_744_073_709_551_615  # 2**64 - 1


def _plain(kind: type, value: Any) -> bool:
    """Whether faust writes ``value`` as orjson does by default."""
    if kind is datetime:
        return bool(value.tzinfo is UTC)
    if kind is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    return True


def quake_json(
    fields: Mapping[str, Any], *, partition: int | None, offset: int | None
) -> bytes | None:
    """``Quake(**fields, raw_partition=..., raw_offset=...).dumps()`` without the
    Record, for fields that already have their coerced types; else None.

    None means "build the Record" (it coerces, or raises): an int where a float
    belongs, a non-UTC datetime, a missing required field, an unknown field.
    The bytes are identical to the Record's (a property test checks every
    captured feature and generated ones).
    """
    values: dict[str, Any] = {
        **fields,
        "raw_partition": partition,
        "raw_offset": offset,
    }
    if not _QUAKE_REQUIRED.issubset(values) or not set(values).issubset(_QUAKE_TYPES):
        return None
    doc: dict[str, Any] = {}
    for name in QUAKE_FIELDS:
        value: Any = values.get(name)
        if value is not None:
            kind = _QUAKE_TYPES[name]
            if type(value) is not kind or not _plain(kind, value):
                return None
        doc[name] = value
    doc["__faust"] = _QUAKE_META
    try:
        return orjson.dumps(doc, option=_FAUST_JSON)
    except (orjson.JSONEncodeError, TypeError):
        return None


def _encode_capped(data: bytes, keep_bytes: int) -> tuple[str, dict[str, Any] | None]:
    """Base64 of ``data`` if it fits the cap, else of its prefix plus a description."""
    if len(data) <= keep_bytes:
        return base64.b64encode(data).decode("ascii"), None
    kept = data[: min(keep_bytes, DEAD_LETTER_TRUNCATED_PREFIX_BYTES)]
    info = {
        "truncated": True,
        "original_length": len(data),
        "kept_bytes": len(kept),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return base64.b64encode(kept).decode("ascii"), info


def _jsonable_detail(detail: Any) -> dict[str, Any]:
    """``detail`` as a JSON-safe dict (string keys), bounded in size."""
    if not isinstance(detail, dict):
        detail = {"detail": detail}
    try:
        text = json.dumps(detail, default=repr, allow_nan=False, sort_keys=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"_unserialisable": f"{type(exc).__name__}: {repr(detail)[:1024]}"}
    if len(text) > ERROR_DETAIL_MAX_BYTES:
        return {"_truncated": text[:ERROR_DETAIL_MAX_BYTES]}
    # orjson (Faust's encoder) refuses integers beyond 64 bits: keep those as text.
    result: dict[str, Any] = json.loads(
        text, parse_int=lambda digits: int(digits) if len(digits) < 19 else digits
    )
    return result


def _clean_text(text: str) -> str:
    """``text`` without lone surrogates (orjson refuses them), escaped instead."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cut_utf8(text: str, max_bytes: int) -> bytes:
    """UTF-8 of ``text``, cut to ``max_bytes`` on a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return data
    return data[:max_bytes].decode("utf-8", "ignore").encode("utf-8")


class DeadLetter(faust.Record, serializer="json", coerce=True):
    """A message that failed validation (or a row the database refused for good).

    ``payload_b64`` holds the original value bytes (base64), whole up to
    ``DEAD_LETTER_KEEP_BYTES``; above that only the first
    ``DEAD_LETTER_TRUNCATED_PREFIX_BYTES`` plus ``error_detail["_payload"]``
    (``truncated``, ``original_length``, ``kept_bytes``, ``sha256``). A null value
    (tombstone) is stored as ``""`` with ``error_detail["_payload"]["null"] = True``.
    """

    source_topic: str
    source_partition: int
    source_offset: int
    payload_b64: str
    error_kind: str
    error_message: str
    error_detail: dict[str, Any]
    failed_at: datetime
    key_b64: str | None = None

    def __post_init__(self) -> None:
        self.failed_at = _utc(self.failed_at)

    @classmethod
    def build(
        cls,
        value: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        error: InvalidRecord,
        *,
        keep_bytes: int = DEAD_LETTER_KEEP_BYTES,
        key_keep_bytes: int = DEAD_LETTER_KEY_KEEP_BYTES,
        now: datetime | None = None,
    ) -> DeadLetter:
        """The dead letter of message ``topic/partition/offset`` that raised ``error``.

        ``keep_bytes``/``key_keep_bytes`` are the caps up to which the payload and
        the key are kept whole (see ``dead_letter_size_bound`` before raising them).
        ``error`` is normally an ``InvalidRecord``; its ``detail`` is made
        JSON-safe and bounded (``ERROR_DETAIL_MAX_BYTES``).
        """
        detail = _jsonable_detail(getattr(error, "detail", {}))
        if value is None:
            payload_b64 = ""
            detail["_payload"] = {"null": True}
        else:
            payload_b64, info = _encode_capped(bytes(value), keep_bytes)
            if info is not None:
                detail["_payload"] = info
        key_b64: str | None = None
        if key is not None:
            key_b64, key_info = _encode_capped(bytes(key), key_keep_bytes)
            if key_info is not None:
                detail["_key"] = key_info
        message = _clean_text(str(getattr(error, "message", error)))
        return cls(
            source_topic=_clean_text(str(topic)),
            source_partition=int(partition),
            source_offset=int(offset),
            key_b64=key_b64,
            payload_b64=payload_b64,
            error_kind=_clean_text(str(getattr(error, "kind", type(error).__name__))),
            error_message=message[:ERROR_MESSAGE_MAX_CHARS],
            error_detail=detail,
            failed_at=now if now is not None else datetime.now(UTC),
        )

    def payload_bytes(self) -> bytes:
        """The original value bytes (only a prefix if ``error_detail`` says so)."""
        return base64.b64decode(self.payload_b64, validate=True)

    def key_bytes(self) -> bytes | None:
        """The original key bytes, or None when the message had no key."""
        if self.key_b64 is None:
            return None
        return base64.b64decode(self.key_b64, validate=True)

    def key_truncated(self) -> bool:
        """True when only a prefix of the original key was kept."""
        info = self.error_detail.get("_key")
        return isinstance(info, dict) and bool(info.get("truncated"))

    def is_truncated(self) -> bool:
        """True when only a prefix of the original payload was kept."""
        info = self.error_detail.get("_payload")
        return isinstance(info, dict) and bool(info.get("truncated"))

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers for the dead-letter topic (message cut to 1 KiB)."""
        return [
            ("error.kind", self.error_kind.encode("utf-8", "replace")),
            ("error.message", _cut_utf8(self.error_message, ERROR_HEADER_MAX_BYTES)),
            ("source.topic", self.source_topic.encode("utf-8", "replace")),
            ("source.partition", str(self.source_partition).encode("ascii")),
            ("source.offset", str(self.source_offset).encode("ascii")),
        ]


def dead_letter_size_bound(
    keep_bytes: int = DEAD_LETTER_KEEP_BYTES,
    key_keep_bytes: int = DEAD_LETTER_KEY_KEEP_BYTES,
    topic_max_chars: int = 249,
) -> int:
    """An upper bound of ``len(DeadLetter.dumps())`` (about 870 KiB by default).

    With the defaults it stays below Kafka's default 1 MiB message limit; raise the
    caps only together with the dead-letter topic's ``max.message.bytes`` and the
    producer's ``max_request_size``.
    """

    def b64(size: int) -> int:
        return 4 * ((size + 2) // 3)

    payload = b64(keep_bytes)  # a truncated prefix is never longer than the cap
    key = b64(key_keep_bytes)
    # JSON escaping: the (ASCII) detail text at most doubles when re-escaped inside
    # "_truncated"; any character of message or topic is at most 6 bytes (\\uXXXX).
    escaped = 2 * ERROR_DETAIL_MAX_BYTES + 6 * (
        ERROR_MESSAGE_MAX_CHARS + topic_max_chars
    )
    return payload + key + escaped + 4096  # field names, numbers, _payload/_key info
