"""The Kafka topics of the pipeline, declared once (names and partitions from settings)."""

from __future__ import annotations

from streamapp.app import app, settings

__all__ = ["clean_topic", "dead_letter_topic", "raw_topic"]

#: Raw features as fetched: bytes, validated by ``agents.validate`` (never decoded by
#: Faust, so a bad message cannot be dropped silently by a deserializer).
raw_topic = app.topic(
    settings.topic_raw,
    key_type=str,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)

#: Validated events (``models.Quake``), keyed by event id.
clean_topic = app.topic(
    settings.topic_clean,
    key_type=str,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)

#: Rejected messages (``models.DeadLetter``) with the original bytes and the reason.
dead_letter_topic = app.topic(
    settings.topic_dead_letter,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)
