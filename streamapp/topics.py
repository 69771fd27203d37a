"""The Kafka topics of the pipeline, declared once (names from the settings)."""

from __future__ import annotations

from streamapp.app import app, settings

__all__ = ["clean_topic", "dead_letter_topic", "raw_topic"]

# Every topic uses the raw codec: Faust drops undecodable messages silently, so the
# agents receive bytes and decode them themselves (bad bytes become dead letters).
# ``internal=True`` makes the worker create them (with ``partitions``) when it
# subscribes, before the first fetch; Faust leaves external topics to auto-creation
# with the broker's default partition count, or waits for them forever.

#: Raw features as fetched (an envelope of the feature and fetch metadata), keyed by id.
raw_topic = app.topic(
    settings.topic_raw,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)

#: Validated events (``models.records.Quake`` JSON), keyed by event id.
clean_topic = app.topic(
    settings.topic_clean,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)

#: Rejected messages (``models.records.DeadLetter`` JSON) with the original bytes.
dead_letter_topic = app.topic(
    settings.topic_dead_letter,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)
