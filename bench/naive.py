"""The naive baseline: one consumer loop, validate, one INSERT and commit per row.

This is the seed tutorial's style: ``async for msg in consumer``, validate the
message with the project's own ``validate_raw``, then one ``INSERT`` (an upsert on
``id``; a dead letter for an invalid message) and one ``COMMIT`` with psycopg2,
blocking the loop. Run as a process by the harness::

    python -m bench.naive --topic T --group G --schema S --status FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import time
from pathlib import Path

from bench.common import base_settings, pg_connect
from bench.sql import INSERT_DEAD_ONE, UPSERT_ONE, dead_letter_row, event_row
from models.records import DeadLetter
from models.validation import validate_raw
from streamapp.exceptions import InvalidRecord
from streamapp.kafka import aiokafka_kwargs


async def consume(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer

    settings = dataclasses.replace(base_settings(), postgres_schema=args.schema)
    conn = pg_connect(settings)
    cur = conn.cursor()
    consumer = AIOKafkaConsumer(
        args.topic,
        **aiokafka_kwargs(settings),
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    await consumer.start()
    # SIGTERM (the harness, when done) cancels the loop, so the consumer leaves its
    # group cleanly in ``finally`` and the group can be deleted at once.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    status = Path(args.status)
    first = True
    try:
        async for msg in consumer:
            if first:
                first_at = time.time()
                with open(status, "w") as f:  # noqa: ASYNC230 - once, a few bytes
                    json.dump({"first_consumed_at": first_at}, f)
                first = False
            try:
                quake = validate_raw(
                    msg.value,
                    max_bytes=settings.max_message_bytes,
                    max_depth=settings.max_json_depth,
                    partition=msg.partition,
                    offset=msg.offset,
                )
            except InvalidRecord as exc:
                letter = DeadLetter.build(
                    msg.value, msg.key, msg.topic, msg.partition, msg.offset, exc
                )
                cur.execute(INSERT_DEAD_ONE, dead_letter_row(letter))
            else:
                cur.execute(UPSERT_ONE, event_row(quake, msg.partition, msg.offset))
            conn.commit()
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--status", required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(consume(args))


if __name__ == "__main__":
    main()
