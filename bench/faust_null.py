"""A limit: Faust consuming the raw topic and doing nothing else (one process).

The smallest possible Faust agent with streamapp's consumer settings: it takes the
raw messages in ``noack_take`` batches (like the validation agent), acks them and
records when it saw the first and the N-th. It tells how fast a Faust worker can
*receive* events at all, before any validation, producing or SQL::

    BENCH_NULL_TOPIC=T BENCH_NULL_N=N BENCH_NULL_STATUS=FILE APP_ID=G \\
        BENCH_NULL_CONSUMER=stock|streamapp \\
        faust -A bench.faust_null worker -l warn --web-port P

``BENCH_NULL_CONSUMER=stock`` (the default) runs faust-streaming's own consumer,
``streamapp`` the one streamapp's worker runs (``streamapp.faust_ext.StreamApp``: the
gapless commit and the drain loop without a task per message).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import faust

from bench.common import base_settings
from streamapp.faust_ext import StreamApp

settings = base_settings()
TOPIC = os.environ.get("BENCH_NULL_TOPIC", "bench-null.raw")
N = int(os.environ.get("BENCH_NULL_N", "0"))
STATUS = Path(os.environ.get("BENCH_NULL_STATUS", "/dev/null"))

CONSUMER = os.environ.get("BENCH_NULL_CONSUMER", "stock")
if CONSUMER not in ("stock", "streamapp"):
    raise SystemExit(f"BENCH_NULL_CONSUMER: stock or streamapp, not {CONSUMER!r}")
app_class = StreamApp if CONSUMER == "streamapp" else faust.App

app = app_class(
    settings.app_id,
    broker=settings.kafka_broker_url,
    store="memory://",
    datadir=os.environ.get("BENCH_NULL_DATADIR", "/tmp/streamapp-faust/null"),
    topic_partitions=settings.topic_partitions,
    topic_allow_declare=True,
    web_port=settings.web_port,
    web_in_thread=False,
    stream_wait_empty=False,
    broker_commit_every=1000,
    broker_commit_interval=1.0,
)
raw = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")


@app.agent(raw, name="drain")
async def drain(stream: Any) -> None:
    """Count and ack; write the first and last times once ``N`` were seen."""
    seen = 0
    first = 0.0
    async for events in stream.noack_take(1000, within=0.2):
        if not seen:
            first = time.time()
        seen += len(events)
        for event in events:
            event.ack()
        if seen >= N:
            STATUS.write_text(  # noqa: ASYNC240 - once, a few bytes
                json.dumps({"first_consumed_at": first, "last_at": time.time()})
            )
