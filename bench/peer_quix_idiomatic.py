"""The peer as a Quix Streams user writes it: JSON in and out, dicts all the way.

The same pipeline topology and the same verdicts as streamapp, in Quix's idiom::

    raw (bytes) -> validate -> clean topic        (value_serializer="json")
                            \\-> dead-letter topic (value_serializer="json",
                                                   the error headers)
    clean (value_deserializer="json") -> QuakeSink.write_batch    (earthquakes)
    dead-letter (value_deserializer="json") -> DeadLetterSink.write_batch

* Validation: the raw topic is read as bytes, because the size, UTF-8 and depth
  checks run before any parsing (and a dead letter keeps the original bytes); the
  project's validator without its Record,
  :func:`models.validation.validated_fields`: ``empty``, ``too_large``,
  ``not_utf8``, ``too_deep``, ``not_json``, ``not_object``, ``schema`` (the compiled
  fast path of the marshmallow schema, and ``ENVELOPE_SCHEMA.load`` for the
  per-field report when it refuses).
* Valid events never become a Faust ``Record``: the clean value is the validated
  field dict (datetimes as ISO-8601 text), written by Quix's JSON serialiser, and
  the sink builds the ``earthquakes`` row from the dict Quix's JSON deserialiser
  returns. Dead letters use the project's error model,
  :class:`models.records.DeadLetter` (its ``build`` caps payloads and details, its
  ``headers`` are the dead-letter topic's headers), sent as its field dict.
* Storage: the same SQL as streamapp, ``streamapp.sinks.QuakeSink.write_batch``
  (COPY + merge upsert, newest ``updated`` wins) and
  ``DeadLetterSink.write_batch``, from Quix ``BatchingSink`` subclasses flushed at
  every checkpoint (``commit_interval``), one transaction per topic-partition batch.
  A transient database error becomes Quix's ``SinkBackpressureError`` (the batch is
  retried).

Run as a process by the harness::

    python -m bench.peer_quix_idiomatic --raw T --clean T --dead-letter T --group G \
        --schema S --status FILE [--commit-interval 1]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bench.peer_quix import application, arguments, first_message_clock
from models.records import QUAKE_FIELDS, DeadLetter
from models.validation import validated_fields
from streamapp.exceptions import InvalidRecord, TransientSinkError
from streamapp.settings import Settings

__all__ = [
    "DATETIME_FIELDS",
    "build",
    "check_raw",
    "clean_value",
    "dead_letter_row_from_value",
    "dead_letter_value",
    "main",
    "quake_row_from_value",
]

#: The fields of a clean value that the schema loads as datetimes (ISO text on the
#: clean topic: Quix's JSON serialiser writes no datetimes).
DATETIME_FIELDS = ("time", "updated", "fetched_at")


def check_raw(value: bytes | None, *, max_bytes: int, max_depth: int) -> dict:
    """The envelope's validated fields, or ``InvalidRecord``: the project's own
    checks and schema (:func:`models.validation.validated_fields`), no Record."""
    return validated_fields(value, max_bytes=max_bytes, max_depth=max_depth)


def clean_value(fields: Mapping[str, Any], partition: int, offset: int) -> dict:
    """The clean-topic value of validated ``fields``: Quake's fields, datetimes as
    ISO-8601 text, the raw message's partition and offset."""
    value = dict(fields)
    for name in DATETIME_FIELDS:
        when = value.get(name)
        if isinstance(when, datetime):
            value[name] = when.isoformat()
    value["raw_partition"] = partition
    value["raw_offset"] = offset
    return value


def quake_row_from_value(
    value: Mapping[str, Any], *, partition: int, offset: int
) -> dict[str, Any]:
    """The ``earthquakes`` row of a clean value read at ``partition``/``offset``."""
    row = {name: value.get(name) for name in QUAKE_FIELDS}
    row["kafka_partition"] = partition
    row["kafka_offset"] = offset
    return row


def dead_letter_value(letter: DeadLetter) -> dict[str, Any]:
    """The dead-letter topic's value: the letter's fields, ``failed_at`` as text."""
    value = dict(letter.asdict())
    value["failed_at"] = letter.failed_at.isoformat()
    return value


def dead_letter_row_from_value(
    value: Mapping[str, Any], *, topic: str, partition: int, offset: int
) -> dict[str, Any]:
    """The ``dead_letters`` row of a dead-letter value (through ``DeadLetter``)."""
    from streamapp.sinks import dead_letter_row

    letter = DeadLetter(**value)
    return dead_letter_row(letter, topic=topic, partition=partition, offset=offset)


def _sinks(settings: Settings) -> tuple[Any, Any]:
    """Quix ``BatchingSink`` adapters around streamapp's own sinks (same SQL)."""
    from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

    from streamapp import sinks as pg

    def write(sink: Any, items: list[Any]) -> None:
        try:
            sink.write_batch(items)
        except TransientSinkError as exc:
            logging.getLogger(__name__).warning("retrying a batch: %s", exc)
            raise SinkBackpressureError(retry_after=1.0) from exc

    class EventSink(BatchingSink):
        """One ``QuakeSink.write_batch`` per checkpoint and partition."""

        def setup(self) -> None:
            self.sink = pg.QuakeSink(settings)

        def write(self, batch: SinkBatch) -> None:
            part = batch.partition
            items = [
                pg.Item(quake_row_from_value(i.value, partition=part, offset=i.offset))
                for i in batch
            ]
            write(self.sink, items)

    class LetterSink(BatchingSink):
        """One ``DeadLetterSink.write_batch`` per checkpoint and partition."""

        def setup(self) -> None:
            self.sink = pg.DeadLetterSink(settings)

        def write(self, batch: SinkBatch) -> None:
            items = [
                pg.Item(
                    dead_letter_row_from_value(
                        i.value,
                        topic=batch.topic,
                        partition=batch.partition,
                        offset=i.offset,
                    )
                )
                for i in batch
            ]
            write(self.sink, items)

    return EventSink(), LetterSink()


def build(args: argparse.Namespace) -> Any:
    """The Quix Streams application of the idiomatic peer."""
    from quixstreams import message_context

    app, settings = application(args)
    raw = app.topic(args.raw, key_deserializer="bytes", value_deserializer="bytes")
    clean = app.topic(
        args.clean,
        key_serializer="str",
        value_serializer="json",
        key_deserializer="str",
        value_deserializer="json",
    )
    dead = app.topic(
        args.dead_letter,
        key_serializer="bytes",
        value_serializer="json",
        key_deserializer="bytes",
        value_deserializer="json",
    )
    seen = first_message_clock(args.status)
    max_bytes, max_depth = settings.max_message_bytes, settings.max_json_depth

    def validate(value: bytes, key: Any, timestamp: int, headers: Any) -> dict:
        ctx = message_context()
        seen()
        try:
            fields = check_raw(value, max_bytes=max_bytes, max_depth=max_depth)
        except InvalidRecord as exc:
            letter = DeadLetter.build(
                value, key, args.raw, ctx.partition, ctx.offset, exc
            )
            return {"error": dead_letter_value(letter), "headers": letter.headers()}
        return clean_value(fields, ctx.partition, ctx.offset)

    sdf = app.dataframe(raw).apply(validate, metadata=True)
    sdf.filter(lambda value: "error" not in value).to_topic(
        clean, key=lambda value: value["id"]
    )
    sdf.filter(lambda value: "error" in value).set_headers(
        lambda value, key, timestamp, headers: value["headers"]
    ).apply(lambda value: value["error"]).to_topic(dead)
    event_sink, letter_sink = _sinks(settings)
    app.dataframe(clean).sink(event_sink)
    app.dataframe(dead).sink(letter_sink)
    return app


def main(argv: list[str] | None = None) -> None:
    args = arguments(__doc__.splitlines()[0], argv)
    logging.basicConfig(level=logging.WARNING)
    build(args).run()


if __name__ == "__main__":
    main()
