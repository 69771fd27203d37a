"""Replay a Kafka topic into a pandas DataFrame without joining a consumer group.

* :mod:`~streamapp.replay.decoding`: one message as a flat row;
* :mod:`~streamapp.replay.frames`: rows as a typed DataFrame;
* :mod:`~streamapp.replay.reader`: a whole topic read by hand-assigned partitions;
* :mod:`~streamapp.replay.tables`: a PostgreSQL table of the pipeline;
* :mod:`~streamapp.replay.output`: a frame written to Parquet or CSV.

Example::

    from streamapp.replay import replay
    frame = replay(None, "earthquakes.clean", since="2024-05-31", limit=1000)
"""

from __future__ import annotations

from streamapp.exceptions import TopicNotFound
from streamapp.replay.columns import (
    CLEAN_FRAME_COLUMNS,
    DEAD_LETTER_FRAME_COLUMNS,
    META_FRAME_COLUMNS,
    RAW_FRAME_COLUMNS,
)
from streamapp.replay.decoding import (
    KINDS,
    RecordLike,
    ReplayKind,
    decode_record,
    resolve_kind,
    to_millis,
)
from streamapp.replay.frames import records_to_frame
from streamapp.replay.output import check_output, write_frame
from streamapp.replay.reader import DEFAULT_TIMEOUT, replay, replay_topic
from streamapp.replay.tables import TABLES, read_table

__all__ = [
    "CLEAN_FRAME_COLUMNS",
    "DEAD_LETTER_FRAME_COLUMNS",
    "DEFAULT_TIMEOUT",
    "KINDS",
    "META_FRAME_COLUMNS",
    "RAW_FRAME_COLUMNS",
    "TABLES",
    "RecordLike",
    "ReplayKind",
    "TopicNotFound",
    "check_output",
    "decode_record",
    "read_table",
    "records_to_frame",
    "replay",
    "replay_topic",
    "resolve_kind",
    "to_millis",
    "write_frame",
]
