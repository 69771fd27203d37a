"""The Kafka topics of the pipeline, declared once (names from the settings)."""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, Message, TopicT

from streamapp.app import app, settings

__all__ = [
    "RawBytes",
    "activity_topic",
    "alerts_topic",
    "clean_topic",
    "dead_letter_topic",
    "pipeline_topic",
    "raw_topic",
]


class RawBytes(faust.Schema):
    """Keys and values exactly as the broker's bytes (the ``raw`` codec, both ways).

    Decoding returns ``message.key`` / ``message.value`` as they are: the ``raw``
    codec would return the same bytes, through a codec-registry lookup and two calls
    per message (5 % of the worker's CPU in py-spy). Encoding is faust's own.
    """

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def loads_key(
        self, app: AppT, message: Message, *, loads: Any = None, serializer: Any = None
    ) -> Any:
        return message.key

    def loads_value(
        self, app: AppT, message: Message, *, loads: Any = None, serializer: Any = None
    ) -> Any:
        return message.value


# Every topic uses the raw codec: Faust drops undecodable messages silently, so the
# agents receive bytes and decode them themselves (bad bytes become dead letters).
# ``internal=True`` makes the worker create them (with ``partitions``) when it
# subscribes, before the first fetch; Faust leaves external topics to auto-creation
# with the broker's default partition count, or waits for them forever.


def pipeline_topic(name: str) -> TopicT:
    """A topic of the pipeline: raw bytes both ways, ``TOPIC_PARTITIONS``
    partitions, created by the worker when it subscribes."""
    return app.topic(
        name, schema=RawBytes(), partitions=settings.topic_partitions, internal=True
    )


#: Raw features as fetched (an envelope of the feature and fetch metadata), keyed by id.
raw_topic = pipeline_topic(settings.topic_raw)

#: Validated events (``models.records.Quake`` JSON), keyed by event id.
clean_topic = pipeline_topic(settings.topic_clean)

#: Rejected messages (``models.records.DeadLetter`` JSON) with the original bytes.
dead_letter_topic = pipeline_topic(settings.topic_dead_letter)

#: Clean events re-keyed by region cell: the activity tables' source (co-partitioned
#: with their changelogs, so one worker holds all of a region's windows).
activity_topic = pipeline_topic(settings.topic_activity)

#: Alerts (``models.alerts.Alert`` JSON), keyed by the alert's id.
alerts_topic = pipeline_topic(settings.topic_alerts)
