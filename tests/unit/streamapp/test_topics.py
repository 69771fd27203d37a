"""Unit tests of the topics' ``RawBytes`` schema (decoding = the broker's bytes)."""

from __future__ import annotations

import pytest
from faust.types import TP
from faust.types.tuples import Message

from streamapp.app import app
from streamapp.topics import RawBytes, clean_topic, dead_letter_topic, raw_topic


def message(key: bytes | None, value: bytes | None) -> Message:
    return Message(
        topic="raw",
        partition=0,
        offset=7,
        timestamp=0.0,
        timestamp_type=0,
        headers=[],
        key=key,
        value=value,
        checksum=None,
        tp=TP("raw", 0),
    )


def test_every_topic_decodes_with_raw_bytes() -> None:
    for topic in (raw_topic, clean_topic, dead_letter_topic):
        assert isinstance(topic.schema, RawBytes)
        assert topic.key_serializer == "raw" and topic.value_serializer == "raw"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"us7000abcd", b'{"feature": {}}'),
        (b"\xff\xfe", b"\x80 not utf-8 \xc3\x28"),  # never decoded, never dropped
        (None, None),  # a tombstone
        (b"", b""),
    ],
)
async def test_events_carry_the_message_bytes(
    key: bytes | None, value: bytes | None
) -> None:
    decode = RawBytes().compile(app)
    event = await decode(message(key, value), propagate=True)
    assert event.key == key
    assert event.value == value
    assert event.message.offset == 7
