"""The ``peer-functions`` contender: Quix Streams running streamapp's own functions.

The same validation (``validate_raw``), records (``Quake``/``DeadLetter`` Faust
records and their ``dumps``/``loads``) and Postgres upsert as streamapp, on Quix
Streams: it shows what the framework alone costs. The ``peer`` contender is the
idiomatic Quix application, :mod:`bench.peer_quix_idiomatic`.

Two topologies (``--mode``):

* ``pipeline`` (default, the same work as streamapp): raw -> ``validate_raw`` ->
  clean topic (``Quake.dumps()``) | dead-letter topic (``DeadLetter`` JSON and the
  error headers); clean -> ``Quake.loads`` -> batched upsert into ``earthquakes``;
  dead-letter -> batched insert into ``dead_letters``. Three StreamingDataFrames
  in one Application, sinks are ``BatchingSink`` subclasses flushed at every
  checkpoint (``commit_interval``), one transaction per topic-partition batch.
* ``direct``: raw -> validate -> the same sinks, without the intermediate topics.

Run as a process by the harness::

    python -m bench.peer_quix --raw T --clean T --dead-letter T --group G \
        --schema S --status FILE [--mode pipeline|direct] [--commit-interval 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import base_settings
from models.records import DeadLetter, Quake
from models.validation import validate_raw
from streamapp.exceptions import InvalidRecord
from streamapp.settings import Settings

__all__ = [
    "application",
    "arguments",
    "as_json_bytes",
    "build",
    "first_message_clock",
    "main",
]


def as_json_bytes(value: bytes | str) -> bytes:
    """A message value as the bytes the records' ``loads`` takes."""
    return value.encode("utf-8") if isinstance(value, str) else value


def _sinks(settings: Settings) -> tuple[Any, Any]:
    """Quix ``BatchingSink`` adapters around streamapp's own sinks (same SQL)."""
    from quixstreams.sinks import BatchingSink, SinkBatch

    from streamapp import sinks as pg

    class EventSink(BatchingSink):
        """One ``QuakeSink.write_batch`` (COPY + merge upsert) per checkpoint batch."""

        def setup(self) -> None:
            self.sink = pg.QuakeSink(settings)

        def write(self, batch: SinkBatch) -> None:
            items = []
            for item in batch:
                value = item.value
                if isinstance(value, bytes | str):  # pipeline: clean-topic JSON
                    row = pg.quake_row(
                        Quake.loads(as_json_bytes(value)),
                        partition=batch.partition,
                        offset=item.offset,
                    )
                else:  # direct: (quake, partition, offset) from the raw topic
                    quake, partition, offset = value
                    row = pg.quake_row(quake, partition=partition, offset=offset)
                items.append(pg.Item(row))
            self.sink.write_batch(items)

    class DeadLetterSink(BatchingSink):
        """One ``DeadLetterSink.write_batch`` per checkpoint batch."""

        def setup(self) -> None:
            self.sink = pg.DeadLetterSink(settings)

        def write(self, batch: SinkBatch) -> None:
            items = []
            for item in batch:
                value = item.value
                if isinstance(value, bytes | str):
                    value = DeadLetter.loads(as_json_bytes(value))
                row = pg.dead_letter_row(
                    value,
                    topic=batch.topic,
                    partition=batch.partition,
                    offset=item.offset,
                )
                items.append(pg.Item(row))
            self.sink.write_batch(items)

    return EventSink(), DeadLetterSink()


def application(args: argparse.Namespace) -> tuple[Any, Settings]:
    """A peer's Quix ``Application`` on the harness's group, and its settings."""
    from quixstreams import Application

    settings = dataclasses.replace(base_settings(), postgres_schema=args.schema)
    app = Application(
        broker_address=settings.kafka_bootstrap_servers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        loglevel="WARNING",
        use_changelog_topics=False,
    )
    return app, settings


def first_message_clock(status: str) -> Callable[[], None]:
    """A function to call per message: the first call writes the harness's clock."""
    path = Path(status)
    first = [True]

    def seen() -> None:
        if first[0]:
            path.write_text(json.dumps({"first_consumed_at": time.time()}))
            first[0] = False

    return seen


def arguments(
    description: str, argv: list[str] | None, *, modes: bool = False
) -> argparse.Namespace:
    """The harness's command line of a peer process."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--raw", required=True)
    parser.add_argument("--clean", required=True)
    parser.add_argument("--dead-letter", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--status", required=True)
    if modes:
        parser.add_argument(
            "--mode", choices=("pipeline", "direct"), default="pipeline"
        )
    parser.add_argument("--commit-interval", type=float, default=5.0)
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Any:
    """The Quix Streams application of the peer."""
    from quixstreams import message_context

    app, settings = application(args)
    raw = app.topic(args.raw, key_deserializer="bytes", value_deserializer="bytes")
    seen = first_message_clock(args.status)

    def route(value: bytes, key: Any, timestamp: int, headers: Any) -> dict[str, Any]:
        ctx = message_context()
        seen()
        try:
            quake = validate_raw(
                value,
                max_bytes=settings.max_message_bytes,
                max_depth=settings.max_json_depth,
                partition=ctx.partition,
                offset=ctx.offset,
            )
        except InvalidRecord as exc:
            letter = DeadLetter.build(
                value, key, args.raw, ctx.partition, ctx.offset, exc
            )
            return {"ok": False, "letter": letter}
        return {"ok": True, "quake": quake, "at": (ctx.partition, ctx.offset)}

    event_sink, dead_sink = _sinks(settings)
    sdf = app.dataframe(raw).apply(route, metadata=True)
    valid = sdf.filter(lambda r: r["ok"])
    invalid = sdf.filter(lambda r: not r["ok"])
    if args.mode == "direct":
        valid.apply(lambda r: (r["quake"], *r["at"])).sink(event_sink)
        invalid.apply(lambda r: r["letter"]).sink(dead_sink)
        return app
    clean_out = app.topic(args.clean, key_serializer="bytes", value_serializer="bytes")
    dead_out = app.topic(
        args.dead_letter, key_serializer="bytes", value_serializer="bytes"
    )
    valid.apply(lambda r: r["quake"].dumps()).to_topic(clean_out)
    invalid.set_headers(
        lambda value, key, timestamp, headers: value["letter"].headers()
    ).apply(lambda r: r["letter"].dumps()).to_topic(dead_out)
    clean_in = app.topic(
        args.clean, key_deserializer="bytes", value_deserializer="bytes"
    )
    dead_in = app.topic(
        args.dead_letter, key_deserializer="bytes", value_deserializer="bytes"
    )
    app.dataframe(clean_in).sink(event_sink)
    app.dataframe(dead_in).sink(dead_sink)
    return app


def main(argv: list[str] | None = None) -> None:
    args = arguments(__doc__.splitlines()[0], argv, modes=True)
    logging.basicConfig(level=logging.WARNING)
    build(args).run()


if __name__ == "__main__":
    main()
