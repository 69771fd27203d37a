"""Batched PostgreSQL sinks: earthquake upserts and dead letters, retried, bisected.

* :mod:`streamapp.sinks.base`: the sink contract (:class:`Sink`, :class:`Item`,
  :class:`Rejected`) with the retry and bisection policy;
* :mod:`streamapp.sinks.copy`: PostgreSQL's COPY text format;
* :mod:`streamapp.sinks.earthquakes`: the ``earthquakes`` connector;
* :mod:`streamapp.sinks.dead_letters`: the ``dead_letters`` connector;
* :mod:`streamapp.sinks.activity`: the ``activity`` connector;
* :mod:`streamapp.sinks.alerts`: the ``alerts`` connector.
"""

from __future__ import annotations

from streamapp.sinks.activity import ActivitySink
from streamapp.sinks.alerts import AlertSink
from streamapp.sinks.base import Item, Rejected, Sink
from streamapp.sinks.dead_letters import (
    DEAD_LETTER_TABLE_COLUMNS,
    DeadLetterSink,
    build_dead_letter_insert,
    dead_letter_row,
)
from streamapp.sinks.earthquakes import (
    QUAKE_TABLE_COLUMNS,
    QuakeSink,
    build_quake_copy,
    build_quake_upsert,
    dedupe_latest,
    quake_row,
    quake_row_from_json,
)

__all__ = [
    "DEAD_LETTER_TABLE_COLUMNS",
    "QUAKE_TABLE_COLUMNS",
    "ActivitySink",
    "AlertSink",
    "DeadLetterSink",
    "Item",
    "QuakeSink",
    "Rejected",
    "Sink",
    "build_dead_letter_insert",
    "build_quake_copy",
    "build_quake_upsert",
    "dead_letter_row",
    "dedupe_latest",
    "quake_row",
    "quake_row_from_json",
]
