"""The one exception tree of streamapp: every error the platform raises on purpose.

::

    StreamappError
    +-- ConfigError                a setting is missing or malformed
    |   +-- UnsupportedVersion     faust-streaming/aiokafka/mode not the pinned one
    +-- KafkaUnavailable           the brokers did not answer in time
    +-- StackError                 the local stack cannot start, stop or answer
    +-- SourceError                the data source delivered nothing usable
    |   +-- SourceUnavailable      unreachable or busy: retry later
    |   +-- SourceResponseError    an unusable body
    |       +-- TooManyEvents      a backfill query matches too many: split it
    +-- InvalidRecord              a raw message failed validation
    +-- SinkError                  writing to PostgreSQL failed
    |   +-- TransientSinkError     retry the same batch in place
    |   +-- PermanentSinkError     the data is refused: bisect, dead-letter
    +-- TopicNotFound              the topic to replay does not exist
    +-- BadRequest (+ ValueError)  a malformed API or command-line parameter
    +-- Interrupted                SIGINT/SIGTERM stopped a command (it resumes)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "ConfigError",
    "Interrupted",
    "InvalidRecord",
    "KafkaUnavailable",
    "PermanentSinkError",
    "SinkError",
    "SourceError",
    "SourceResponseError",
    "SourceUnavailable",
    "StackError",
    "StreamappError",
    "TooManyEvents",
    "TopicNotFound",
    "TransientSinkError",
    "UnsupportedVersion",
]


class StreamappError(Exception):
    """Root of every error raised by streamapp on purpose."""


class ConfigError(StreamappError):
    """A setting is missing or malformed; the message says what to fix, in one line."""


class UnsupportedVersion(ConfigError):
    """An installed faust-streaming, aiokafka or mode is not the pinned version."""


class KafkaUnavailable(StreamappError):
    """The Kafka brokers did not answer within ``KAFKA_WAIT_SECONDS``."""


class StackError(StreamappError):
    """The local stack (ZooKeeper, Kafka, PostgreSQL) cannot start, stop or answer."""


class SourceError(StreamappError):
    """The external data source could not deliver a usable document."""


class SourceUnavailable(SourceError):
    """Connection refused, DNS failure, timeout or a 5xx/429: worth retrying later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceResponseError(SourceError):
    """The source answered with a body we cannot use (not JSON, truncated, too big)."""


class TooManyEvents(SourceResponseError):
    """A backfill range matches more events than one query may return: split it."""


class InvalidRecord(StreamappError):
    """A raw message failed validation: ``kind`` for machines, ``detail`` per field."""

    def __init__(self, kind: str, message: str, detail: Any | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.detail = detail if detail is not None else {}


class SinkError(StreamappError):
    """Writing to PostgreSQL failed."""


class TransientSinkError(SinkError):
    """The database is unreachable or busy: retry the same batch in place."""


class PermanentSinkError(SinkError):
    """The database rejects the data itself: retrying will never succeed."""


class TopicNotFound(StreamappError):
    """The topic to replay does not exist on the broker."""


class BadRequest(StreamappError, ValueError):
    """A request parameter is malformed; the message says which and why (a 400)."""


class Interrupted(StreamappError):
    """SIGINT or SIGTERM stopped a command; running it again resumes."""
