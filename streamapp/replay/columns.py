"""The columns of replayed frames: Kafka metadata first, then the decoded value."""

from __future__ import annotations

from models.records import QUAKE_FIELDS

__all__ = [
    "CLEAN_FRAME_COLUMNS",
    "DEAD_LETTER_FRAME_COLUMNS",
    "DEFAULT_TIMEOUT",
    "KINDS",
    "META_FRAME_COLUMNS",
    "RAW_FRAME_COLUMNS",
    "RAW_PROPERTIES",
]

#: What a topic holds, for decoding: ``auto`` tells by the topic's name.
KINDS: tuple[str, ...] = ("auto", "raw", "clean", "dead-letter")
#: Seconds a replay may take before it gives up.
DEFAULT_TIMEOUT = 30.0

#: Kafka metadata columns every replayed frame starts with.
META_FRAME_COLUMNS: tuple[str, ...] = ("partition", "offset", "timestamp", "key")
#: USGS feature properties in feed order; unknown properties are appended after them.
RAW_PROPERTIES: tuple[str, ...] = (
    "mag",
    "place",
    "time",
    "updated",
    "tz",
    "url",
    "detail",
    "felt",
    "cdi",
    "mmi",
    "alert",
    "status",
    "tsunami",
    "sig",
    "net",
    "code",
    "ids",
    "sources",
    "types",
    "nst",
    "dmin",
    "rms",
    "gap",
    "magType",
    "type",
    "title",
)
#: Columns of a raw-topic frame (unknown feature properties go before the errors).
RAW_FRAME_COLUMNS: tuple[str, ...] = (
    *META_FRAME_COLUMNS,
    "id",
    *RAW_PROPERTIES,
    "lon",
    "lat",
    "depth",
    "fetched_at",
    "source_url",
    "decode_error",
    "value_preview",
)
#: Columns of a dead-letter frame (unknown fields of a letter are appended).
DEAD_LETTER_FRAME_COLUMNS: tuple[str, ...] = (
    *META_FRAME_COLUMNS,
    "error_kind",
    "error_message",
    "error_detail",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_key",
    "payload",
    "payload_size",
    "payload_text",
    "decode_error",
)
#: Columns of a clean-topic frame: the metadata, then the ``models.records.Quake``
#: fields in declaration order.
CLEAN_FRAME_COLUMNS: tuple[str, ...] = (*META_FRAME_COLUMNS, *QUAKE_FIELDS)
