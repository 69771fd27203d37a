"""The sink agents: clean topic -> earthquakes, dead-letter topic -> dead_letters."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from faust.types import StreamT

from models.records import DeadLetter, Quake
from streamapp.app import app, settings
from streamapp.backoff import backoff_delay
from streamapp.db import migrate
from streamapp.delivery import Outgoing, deliver
from streamapp.exceptions import InvalidRecord, SinkError, TransientSinkError
from streamapp.faust_ext import Received, Record, receive_batches
from streamapp.metrics import observe_sink_batch
from streamapp.overlap import InFlight
from streamapp.sinks import (
    DeadLetterSink,
    Item,
    QuakeSink,
    Rejected,
    dead_letter_row,
    quake_row,
    quake_row_from_json,
)
from streamapp.stats import stats
from streamapp.topics import clean_topic, dead_letter_topic

__all__ = [
    "SchemaGate",
    "commit_quake_batch",
    "dead_letter_message",
    "dead_letter_of",
    "decode_quake_batch",
    "ensure_schema",
    "schema_gate",
    "store_dead_letter_batch",
    "store_dead_letters",
    "store_quake_batch",
    "store_quakes",
]

log = logging.getLogger(__name__)

#: How long the worker keeps retrying a migration that fails transiently (database
#: starting, unreachable) before it gives up and stops.
MIGRATE_PATIENCE_SECONDS = 60.0


async def _migrate_patiently() -> list[str]:
    deadline = time.monotonic() + MIGRATE_PATIENCE_SECONDS
    attempt = 0
    while True:
        try:
            return await asyncio.to_thread(migrate, settings)
        except TransientSinkError as exc:
            attempt += 1
            delay = backoff_delay(attempt)
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database migration: %s; retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)


class SchemaGate:
    """Applies the migrations once per process and remembers the outcome.

    Example::

        if not await schema_gate().ensure():
            return  # the worker is stopping
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.ready = False
        self.failed = False

    async def ensure(self) -> bool:
        """True once the schema is current; False (worker stopping) on failure."""
        async with self.lock:
            if self.ready:
                return True
            if self.failed:
                return False
            try:
                await _migrate_patiently()
            except SinkError as exc:
                failure: str | None = str(exc)
            else:
                failure = None
            if failure is None:
                self.ready = True
                return True
            self.failed = True
        log.critical(
            "streamapp: database migration failed, stopping the worker: %s", failure
        )
        # Crash outside the ``except`` block with a fresh exception, so Faust's own
        # crash report does not repeat the whole traceback.
        await app.crash(SinkError(f"database migration failed: {failure}"))
        return False


@functools.cache
def schema_gate() -> SchemaGate:
    """The process's one :class:`SchemaGate`, made on first use."""
    return SchemaGate()


async def ensure_schema() -> bool:
    """Apply the migrations once per process, before any agent writes.

    Both sink agents await this first; the advisory lock in ``migrate`` makes it safe
    across workers. On failure the worker is stopped (one CRITICAL line naming the
    cause, exit status 1) and ``False`` is returned so the agent just ends.
    """
    return await schema_gate().ensure()


def _payload(record: Record) -> bytes:
    value = record.value
    if value is None:
        raise ValueError("the message has no value (a tombstone)")
    return value


def dead_letter_of(record: Record, error: InvalidRecord) -> DeadLetter:
    """The dead letter of a received record that failed for ``error``."""
    return DeadLetter.build(
        record.value,
        record.key,
        record.topic,
        record.partition,
        record.offset,
        error,
    )


def dead_letter_message(letter: DeadLetter) -> Outgoing:
    """The dead-letter-topic message of a dead letter (its key, JSON, headers)."""
    return Outgoing(
        dead_letter_topic, letter.key_bytes(), letter.dumps(), headers=letter.headers()
    )


def decode_quake_batch(
    records: Sequence[Record],
) -> tuple[list[Item], list[DeadLetter]]:
    """The rows of a batch of clean records, and dead letters for what is not one."""
    items: list[Item] = []
    letters: list[DeadLetter] = []
    for record in records:
        try:
            value = _payload(record)
            # Fast path: the JSON straight to a row; anything unusual is decoded by
            # Quake.loads, the authority (which coerces it, or raises: dead letter).
            row = quake_row_from_json(
                value, partition=record.partition, offset=record.offset
            )
            if row is None:
                row = quake_row(
                    Quake.loads(value),
                    partition=record.partition,
                    offset=record.offset,
                )
        except Exception as exc:  # any decode failure: dead-letter, never drop
            letters.append(
                dead_letter_of(
                    record,
                    InvalidRecord(
                        "schema",
                        f"clean-topic message does not decode as Quake: "
                        f"{type(exc).__name__}: {exc}",
                        {"stage": "sink", "exception": type(exc).__name__},
                    ),
                )
            )
            continue
        items.append(Item(row, ref=record))
    return items, letters


async def commit_quake_batch(
    received: Received,
    items: Sequence[Item],
    letters: list[DeadLetter],
    sink: QuakeSink,
) -> int:
    """Upsert decoded rows, dead-letter what the database refuses, then ack all."""
    for item in items:
        sink.add(item)
    started = time.monotonic()
    rejected: list[Rejected] = await sink.flush()
    observe_sink_batch("earthquakes", len(received), time.monotonic() - started)
    for refused in rejected:
        letters.append(
            dead_letter_of(
                refused.item.ref,
                InvalidRecord(
                    "sink_rejected",
                    refused.error,
                    {
                        "stage": "sink",
                        "table": "earthquakes",
                        "sqlstate": refused.sqlstate,
                    },
                ),
            )
        )
    if letters:
        # Kafka must hold every dead letter before the batch is acked.
        await deliver([dead_letter_message(letter) for letter in letters])
    received.ack()
    stored = len(received) - len(letters)
    stats.incr("upserted", stored)
    if letters:
        stats.incr("sink_rejected", len(letters))
    return stored


async def store_quake_batch(received: Received, sink: QuakeSink) -> int:
    """Decode, upsert, dead-letter what cannot be stored, then ack the whole batch.

    Returns how many events were upserted. Events are acked only after the
    database commit AND the broker's receipt of every dead letter; if anything
    raises (or the task is cancelled) nothing is acked and Kafka redelivers.
    """
    items, letters = decode_quake_batch(received.records)
    return await commit_quake_batch(received, items, letters, sink)


async def store_dead_letter_batch(received: Received, sink: DeadLetterSink) -> int:
    """Persist a batch of dead letters (idempotently), then ack it; returns the count.

    A dead-letter message that does not decode is stored too, as a dead letter of
    the dead-letter topic itself. A row the database still refuses is stored in a
    minimal form (bytes, kind, the database's reason) instead.
    """
    for record in received.records:
        try:
            letter = DeadLetter.loads(_payload(record))
            row = dead_letter_row(
                letter,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        except Exception as exc:  # undecodable: keep its bytes, never drop
            letter = dead_letter_of(
                record,
                InvalidRecord(
                    "schema",
                    f"dead-letter topic message does not decode as DeadLetter: "
                    f"{type(exc).__name__}: {exc}",
                    {"stage": "dead_letter_sink", "exception": type(exc).__name__},
                ),
            )
            row = dead_letter_row(
                letter,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        sink.add(Item(row, ref=record))
    started = time.monotonic()
    rejected = await sink.flush()
    lost = 0
    if rejected:
        for refused in rejected:
            sink.add(DeadLetterSink.fallback(refused))
        for refused in await sink.flush():
            lost += 1
            coords = refused.item.row
            log.error(
                "dead letter %s/%s/%s cannot be stored (%s); it stays in the topic",
                coords.get("source_topic"),
                coords.get("source_partition"),
                coords.get("source_offset"),
                refused.error,
            )
    observe_sink_batch("dead_letters", len(received), time.monotonic() - started)
    received.ack()
    stored = len(received) - lost
    stats.incr("dead_lettered", stored)
    if lost:
        stats.incr("sink_rejected", lost)
    return stored


def _batches(stream: StreamT[Any]) -> AsyncIterator[Received]:
    """Received batches of the sink's settings: ``SINK_BATCH_SIZE`` records or
    what arrived within ``SINK_BATCH_SECONDS``; acked by the caller after the
    commit (and the broker's receipt of any dead letter)."""
    return receive_batches(
        stream,
        max_records=settings.sink_batch_size,
        within=settings.sink_batch_seconds,
    )


@app.agent(clean_topic, name="store_quakes")
async def store_quakes(stream: StreamT[Any]) -> None:
    """Upsert clean events into ``earthquakes`` in batches; ack after the commit."""
    if not await ensure_schema():
        return
    sink = QuakeSink(settings)
    try:
        # Batch N+1 is read and decoded while batch N is written (InFlight):
        # one database transaction at a time, in order, each acked after commit.
        async with InFlight() as in_flight:
            async for received in _batches(stream):
                items, letters = decode_quake_batch(received.records)
                await in_flight.submit(
                    commit_quake_batch(received, items, letters, sink)
                )
    finally:
        sink.close()


@app.agent(dead_letter_topic, name="store_dead_letters")
async def store_dead_letters(stream: StreamT[Any]) -> None:
    """Persist dead letters into ``dead_letters`` in batches; ack after the commit."""
    if not await ensure_schema():
        return
    sink = DeadLetterSink(settings)
    try:
        async with InFlight() as in_flight:
            async for received in _batches(stream):
                await in_flight.submit(store_dead_letter_batch(received, sink))
    finally:
        sink.close()
