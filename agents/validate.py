"""The ``validate_quakes`` agent: raw topic -> clean topic | dead-letter topic."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from faust.types import StreamT

from models.records import DeadLetter
from models.validation import validate_raw_json
from streamapp.app import app, settings
from streamapp.delivery import Outgoing, deliver
from streamapp.exceptions import InvalidRecord
from streamapp.faust_ext import Received, Record, receive_batches
from streamapp.overlap import InFlight
from streamapp.stats import stats
from streamapp.topics import clean_topic, dead_letter_topic, raw_topic

__all__ = ["deliver_and_ack", "forward", "route", "route_batch", "validate_quakes"]

log = logging.getLogger(__name__)

#: How many raw messages are validated, forwarded and acked together.
VALIDATE_BATCH = 1000
#: How long a partial batch waits for more messages before it is processed.
VALIDATE_WITHIN = 0.1


def route(
    value: bytes | None,
    key: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> tuple[bool, Outgoing]:
    """Validate one raw message and say where it goes: ``(is_valid, message)``.

    Never raises for bad data: whatever the bytes, the result is either the clean
    event keyed by its id, or a dead letter carrying the original bytes and reason.
    """
    try:
        event_id, clean = validate_raw_json(
            value,
            max_bytes=settings.max_message_bytes,
            max_depth=settings.max_json_depth,
            partition=partition,
            offset=offset,
        )
    except InvalidRecord as exc:
        letter = DeadLetter.build(value, key, topic, partition, offset, exc)
        # The dead letter is keyed by the original key only while that fits: a huge
        # key would make the dead letter itself too large for Kafka (a poison pill
        # retried for ever). The letter keeps the key, or its prefix and sha256.
        letter_key = key if key is None or not letter.key_truncated() else None
        return False, Outgoing(
            dead_letter_topic, letter_key, letter.dumps(), headers=letter.headers()
        )
    return True, Outgoing(clean_topic, event_id.encode("utf-8"), clean)


def route_batch(records: Sequence[Record]) -> tuple[list[Outgoing], int, list[str]]:
    """Route a batch of raw records: ``(messages, valid count, invalid kinds)``."""
    outgoing: list[Outgoing] = []
    valid = 0
    kinds: list[str] = []
    for record in records:
        ok, out = route(
            record.value,
            record.key,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        outgoing.append(out)
        if ok:
            valid += 1
        else:
            kinds.append(_header(out, "error.kind"))
    return outgoing, valid, kinds


async def deliver_and_ack(
    received: Received, outgoing: Sequence[Outgoing], valid: int, kinds: list[str]
) -> tuple[int, int]:
    """Deliver a routed batch, then ack its input; returns (valid, invalid)."""
    # Kafka must have every clean event and dead letter before the input is acked.
    await deliver(outgoing)
    received.ack()
    stats.incr("valid", valid)
    for kind in kinds:
        stats.incr_invalid(kind)
    return valid, len(kinds)


async def forward(received: Received) -> tuple[int, int]:
    """Route a batch of raw records, deliver every result, then ack the batch."""
    outgoing, valid, kinds = route_batch(received.records)
    return await deliver_and_ack(received, outgoing, valid, kinds)


@app.agent(raw_topic, name="validate_quakes")
async def validate_quakes(stream: StreamT[Any]) -> None:
    """Validate every raw message; fan out to the clean and dead-letter topics.

    The records arrive a fetch at a time (:func:`~streamapp.faust_ext.receive_batches`:
    no faust ``Event`` per message) and are acked only once Kafka has every
    message they were routed to. Batch N+1 is read and validated while batch N
    waits for the broker's acks (:class:`~streamapp.overlap.InFlight`); N+1 is
    sent only once N is delivered and acked, so the output keeps the input's order.
    """
    batches = receive_batches(
        stream, max_records=VALIDATE_BATCH, within=VALIDATE_WITHIN
    )
    async with InFlight() as in_flight:
        async for received in batches:
            outgoing, valid, kinds = route_batch(received.records)
            await in_flight.submit(deliver_and_ack(received, outgoing, valid, kinds))


def _header(out: Outgoing, name: str) -> str:
    for key, value in out.headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return "unknown"
