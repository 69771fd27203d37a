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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamapp.exceptions import TopicNotFound
    from streamapp.replay.columns import (
        CLEAN_FRAME_COLUMNS,
        DEAD_LETTER_FRAME_COLUMNS,
        DEFAULT_TIMEOUT,
        KINDS,
        META_FRAME_COLUMNS,
        RAW_FRAME_COLUMNS,
    )
    from streamapp.replay.decoding import (
        RecordLike,
        ReplayKind,
        decode_record,
        resolve_kind,
        to_millis,
    )
    from streamapp.replay.frames import records_to_frame
    from streamapp.replay.output import check_output, write_frame
    from streamapp.replay.reader import replay, replay_topic
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

#: Where each public name lives. The package imports pandas only when a name that
#: needs it is first used: the worker discovers the replay command at start and
#: keeps pandas (about 100 MB) out of its memory.
_HOME = {
    "TopicNotFound": "streamapp.exceptions",
    **dict.fromkeys(
        (
            "CLEAN_FRAME_COLUMNS",
            "DEAD_LETTER_FRAME_COLUMNS",
            "DEFAULT_TIMEOUT",
            "KINDS",
            "META_FRAME_COLUMNS",
            "RAW_FRAME_COLUMNS",
        ),
        "streamapp.replay.columns",
    ),
    **dict.fromkeys(
        ("RecordLike", "ReplayKind", "decode_record", "resolve_kind", "to_millis"),
        "streamapp.replay.decoding",
    ),
    "records_to_frame": "streamapp.replay.frames",
    "check_output": "streamapp.replay.output",
    "write_frame": "streamapp.replay.output",
    "replay": "streamapp.replay.reader",
    "replay_topic": "streamapp.replay.reader",
    "TABLES": "streamapp.replay.tables",
    "read_table": "streamapp.replay.tables",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
