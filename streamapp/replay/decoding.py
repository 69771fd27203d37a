"""Decoding: one Kafka message of the raw, clean or dead-letter topic as a flat row."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import pandas as pd

from streamapp.replay.columns import KINDS, META_FRAME_COLUMNS
from streamapp.settings import Settings

__all__ = [
    "PREVIEW_CHARS",
    "RecordLike",
    "ReplayKind",
    "decode_record",
    "in_window",
    "resolve_kind",
    "to_millis",
]


ReplayKind = Literal["auto", "raw", "clean", "dead-letter"]
#: The decoders ``kind`` can name; ``auto`` picks one from the topic name or content.
#: Characters of a payload kept in the human-readable preview columns.
PREVIEW_CHARS = 200
_RAW_RESERVED = frozenset(
    (*META_FRAME_COLUMNS, "id", "lon", "lat", "depth", "fetched_at", "source_url")
) | {"decode_error", "value_preview"}
#: Keys of Faust's own record metadata, not data.
_FAUST_META = "__faust"


class RecordLike(Protocol):
    """What the decoders read from a message (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def resolve_kind(settings: Settings, topic: str, kind: str = "auto") -> str:
    """The decoder for ``topic``: ``kind`` itself, or guessed from the topic name.

    Returns ``"auto"`` when the name says nothing; each message is then sniffed.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    known = {
        settings.topic_raw: "raw",
        settings.topic_clean: "clean",
        settings.topic_dead_letter: "dead-letter",
    }
    if topic in known:
        return known[topic]
    name = topic.lower()
    if "dead" in name or "dlq" in name:
        return "dead-letter"
    if name.endswith("raw"):
        return "raw"
    if name.endswith("clean"):
        return "clean"
    return "auto"


def decode_record(record: RecordLike, kind: str = "auto") -> dict[str, Any]:
    """One message as a flat row (column -> value). Never raises for bad bytes.

    ``kind`` is ``raw``, ``clean``, ``dead-letter`` or ``auto`` (sniff the content).
    Messages that cannot be read get a row whose ``decode_error`` says why.
    """
    row: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": _key_text(record.key),
    }
    doc, error = _load_json(record.value)
    if kind == "auto":
        kind = _sniff(doc)
    if kind == "raw":
        row.update(_decode_raw(doc, error, record.value))
    elif kind == "clean":
        row.update(_decode_clean(doc, error, record.value))
    elif kind == "dead-letter":
        row.update(_decode_dead_letter(doc, error, record))
    else:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    return row


def to_millis(when: Any) -> int | None:
    """Epoch milliseconds of a datetime, pandas Timestamp, ISO string or number.

    Naive datetimes are taken as UTC; numbers are already epoch milliseconds.
    """
    if when is None:
        return None
    if isinstance(when, bool):
        raise TypeError(f"not a point in time: {when!r}")
    if isinstance(when, int | float):
        return int(when)
    stamp = pd.Timestamp(when)
    if stamp is pd.NaT:
        raise ValueError(f"not a point in time: {when!r}")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp() * 1000)


def in_window(timestamp: int, since_ms: int | None, until_ms: int | None) -> bool:
    """True when ``since_ms <= timestamp < until_ms`` (a None bound is open)."""
    if since_ms is not None and timestamp < since_ms:
        return False
    return not (until_ms is not None and timestamp >= until_ms)


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, str):
        return key
    return bytes(key).decode("utf-8", "backslashreplace")


def _preview(value: bytes | None) -> str | None:
    if value is None:
        return None
    return bytes(value[: PREVIEW_CHARS * 4]).decode("utf-8", "replace")[:PREVIEW_CHARS]


def _load_json(value: bytes | None) -> tuple[Any, str | None]:
    """``(document, None)`` or ``(None, "<kind>: <message>")``."""
    if value is None or len(value) == 0:
        return None, "empty: the message has no value"
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not_utf8: {exc}"
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"not_json: {exc}"


def _sniff(doc: Any) -> str:
    if isinstance(doc, dict):
        meta = doc.get(_FAUST_META)
        namespace = str(meta.get("ns", "")) if isinstance(meta, dict) else ""
        if namespace.endswith("DeadLetter"):
            return "dead-letter"
        if namespace.endswith("Quake"):
            return "clean"
        if "feature" in doc:
            return "raw"
        if "error_kind" in doc or "error" in doc:
            return "dead-letter"
        return "clean"
    return "raw"


def _scalar(value: Any) -> Any:
    """Lists and objects become JSON text so every cell stays a scalar."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def _decode_raw(doc: Any, error: str | None, value: bytes | None) -> dict[str, Any]:
    if error is None and not isinstance(doc, dict):
        error = f"not_object: the envelope is a JSON {type(doc).__name__}"
    if error is None and not isinstance(doc.get("feature"), dict):
        error = "no_feature: the envelope has no 'feature' object"
    if error is not None:
        return {"decode_error": error, "value_preview": _preview(value)}
    feature = doc["feature"]
    row: dict[str, Any] = {"id": _scalar(feature.get("id"))}
    properties = feature.get("properties")
    if isinstance(properties, dict):
        for name, item in properties.items():
            column = f"properties.{name}" if name in _RAW_RESERVED else name
            row[column] = _scalar(item) if isinstance(item, dict | list) else item
    geometry = feature.get("geometry")
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if isinstance(coords, list):
        for column, item in zip(("lon", "lat", "depth"), coords, strict=False):
            row[column] = _scalar(item)
    row["fetched_at"] = _scalar(doc.get("fetched_at"))
    row["source_url"] = _scalar(doc.get("source_url"))
    return row


def _decode_clean(doc: Any, error: str | None, value: bytes | None) -> dict[str, Any]:
    if error is None and not isinstance(doc, dict):
        error = f"not_object: the record is a JSON {type(doc).__name__}"
    if error is not None:
        return {"decode_error": error, "value_preview": _preview(value)}
    row: dict[str, Any] = {}
    for name, item in doc.items():
        if name == _FAUST_META:
            continue
        column = f"record.{name}" if name in META_FRAME_COLUMNS else name
        row[column] = _scalar(item)
    return row


def _decode_dead_letter(
    doc: Any, error: str | None, record: RecordLike
) -> dict[str, Any]:
    headers = {
        name: bytes(raw).decode("utf-8", "replace")
        for name, raw in (record.headers or ())
        if raw is not None
    }
    row: dict[str, Any] = {
        "error_kind": headers.get("error.kind"),
        "error_message": headers.get("error.message"),
        "source_topic": headers.get("source.topic"),
        "source_partition": headers.get("source.partition"),
        "source_offset": headers.get("source.offset"),
    }
    if error is None and not isinstance(doc, dict):
        error = f"not_object: the dead letter is a JSON {type(doc).__name__}"
    if error is not None:
        row["decode_error"] = error
        row["payload_text"] = _preview(record.value)
        return row
    err = doc.get("error") if isinstance(doc.get("error"), dict) else {}
    source = doc.get("source") if isinstance(doc.get("source"), dict) else {}
    row["error_kind"] = _first(
        doc.get("error_kind"), err.get("kind"), row["error_kind"]
    )
    row["error_message"] = _first(
        doc.get("error_message"), err.get("message"), row["error_message"]
    )
    detail = _first(doc.get("error_detail"), err.get("detail"))
    row["error_detail"] = None if detail is None else json.dumps(detail, sort_keys=True)
    for part in ("topic", "partition", "offset"):
        row[f"source_{part}"] = _first(
            doc.get(f"source_{part}"), source.get(part), row[f"source_{part}"]
        )
    payload, payload_error = _payload(doc)
    row["payload"] = payload
    row["payload_size"] = None if payload is None else len(payload)
    row["payload_text"] = _preview(payload)
    key_field = _first(doc.get("key_b64"), doc.get("source_key_b64"), doc.get("key"))
    key_bytes = _b64(key_field) if key_field is not None else None
    row["source_key"] = _key_text(key_bytes) if key_bytes is not None else key_field
    if payload_error:
        row["decode_error"] = payload_error
    handled = {
        "error",
        "error_kind",
        "error_message",
        "error_detail",
        "source",
        "source_topic",
        "source_partition",
        "source_offset",
        "key",
        "key_b64",
        "source_key_b64",
        _FAUST_META,
        *_PAYLOAD_FIELDS,
    }
    for name, item in doc.items():
        if name not in handled:
            column = (
                f"letter.{name}" if name in row or name in META_FRAME_COLUMNS else name
            )
            row[column] = _scalar(item)
    return row


#: Where a dead letter may carry the original bytes (base64 text).
_PAYLOAD_FIELDS = ("payload_b64", "payload", "value_b64", "value")


def _payload(doc: Mapping[str, Any]) -> tuple[bytes | None, str | None]:
    for name in _PAYLOAD_FIELDS:
        if name in doc and doc[name] is not None:
            raw = doc[name]
            decoded = _b64(raw)
            if decoded is None:
                return None, f"bad_payload: {name!r} is not base64 text"
            return decoded, None
    return None, None


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None
