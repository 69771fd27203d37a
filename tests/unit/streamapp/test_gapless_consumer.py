"""Unit tests of the consumer that never commits past an offset it did not ack."""

from __future__ import annotations

from faust.types import TP

from agents.heal import holes_to_heal
from streamapp.app import app
from streamapp.kafka import GaplessConsumer

TOPIC_PARTITION = TP("raw", 0)


def fresh_consumer() -> GaplessConsumer:
    consumer = app.consumer
    assert isinstance(consumer, GaplessConsumer)
    consumer._acked.clear()
    consumer._acked_index.clear()
    consumer._committed_offset.clear()
    consumer._gap.clear()
    consumer.holes.clear()
    return consumer


def test_contiguous_acks_commit_to_the_next_offset() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 42
    consumer._acked[TOPIC_PARTITION].extend([42, 43, 44])
    assert consumer._new_offset(TOPIC_PARTITION) == 45
    assert consumer.holes == {}


def test_a_single_missing_offset_holds_the_commit_back() -> None:
    """faust-streaming commits 44 here (the hole is only one message wide)."""
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 42
    consumer._acked[TOPIC_PARTITION].extend([43])
    assert consumer._new_offset(TOPIC_PARTITION) is None
    assert consumer.holes[TOPIC_PARTITION][0] == 42


def test_a_missing_offset_zero_holds_the_commit_back() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 0
    consumer._acked[TOPIC_PARTITION].extend([1, 2])
    assert consumer._new_offset(TOPIC_PARTITION) is None


def test_the_hole_closes_once_the_message_is_acked() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 42
    consumer._acked[TOPIC_PARTITION].extend([43])
    assert consumer._new_offset(TOPIC_PARTITION) is None
    consumer._acked[TOPIC_PARTITION].append(42)
    assert consumer._new_offset(TOPIC_PARTITION) == 44
    assert consumer.holes == {}


def test_holes_are_healed_only_after_the_grace_period() -> None:
    holes = {TOPIC_PARTITION: (42, 100.0)}
    assert holes_to_heal(holes, now=105.0, grace=10.0) == []
    assert holes_to_heal(holes, now=110.5, grace=10.0) == [(TOPIC_PARTITION, 42)]
