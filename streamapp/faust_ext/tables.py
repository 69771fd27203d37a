"""Tables written from the batch path: the changelog partition chosen by key.

faust-streaming 0.15.3's ``Table.partition_for_key`` takes the changelog
partition from the current stream event (the partition of the message being
processed), which the batch path (:func:`~streamapp.faust_ext.receive_batches`)
has none of; ``use_partitioner=True`` instead lets the producer hash the whole
serialized key. :class:`CopartitionedTable` hashes a *part* of the key (e.g. the
region of a ``region/event`` key) with the producer's own partitioner
(aiokafka's ``DefaultPartitioner``, murmur2), so the changelog partition of a
key equals the partition of a source topic keyed by that part: the worker that
owns the source partition recovers exactly those keys.

Example::

    table = CopartitionedTable(
        app,
        name="activity_events",
        partition_key=lambda key: key.split("/", 1)[0].encode(),
        key_type=str,
        value_type=list,
    )
    app.tables.add(table)
    table["30N130E/us1"] = [1717200000000, 4.5, 10.0]  # outside any stream event
    await table.changelog_sent()  # the broker has every change (ack after this)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from faust.tables.table import Table
from faust.types import AppT
from faust.types.codecs import CodecArg
from faust.types.tuples import FutureMessage

__all__ = ["CopartitionedTable", "partition_of"]

log = logging.getLogger(__name__)

_PARTITIONER = DefaultPartitioner()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition aiokafka's producer picks for ``key`` among ``partitions``
    (all available): murmur2 of the key bytes, as Kafka's Java client does."""
    every = list(range(partitions))
    return int(_PARTITIONER(key, every, every))


class CopartitionedTable(Table):
    """A faust ``Table`` whose changelog partition is the producer's partition
    of ``partition_key(key)`` (bytes), not that of the current stream event.

    Overrides ``faust.tables.base.Collection.partition_for_key`` (faust-streaming
    0.15.3), which needs a current event unless ``use_partitioner`` is set;
    can go when faust lets a table choose its partition from the key.

    It also keeps the changelog sends (faust's ``send_changelog`` fires and
    forgets them) so that :meth:`changelog_sent` can wait for the broker's
    acknowledgement of every change before the input is acked.
    """

    def __init__(
        self,
        app: AppT,
        *,
        partition_key: Callable[[Any], bytes],
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.partition_key = partition_key
        self._sends: list[tuple[Any, FutureMessage]] = []

    @property
    def changelog_partitions(self) -> int:
        """Partitions of the changelog topic (the app's ``topic_partitions``)."""
        return int(
            self.changelog_topic.partitions
            or self.partitions
            or self.app.conf.topic_partitions
        )

    def partition_for_key(self, key: Any) -> int | None:
        return partition_of(self.partition_key(key), self.changelog_partitions)

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        """faust's ``Collection.send_changelog``, remembering the send."""
        fut = super().send_changelog(
            partition, key, value, key_serializer, value_serializer
        )
        self._sends.append((key, fut))
        return fut

    async def changelog_sent(self, *, max_backoff: float = 10.0) -> int:
        """Wait until the broker acknowledged every change since the last call.

        A change whose send failed is sent again with the key's current value
        (or a tombstone), with backoff, until it is acknowledged: the caller
        acks its input only after this returns. Returns the rounds it took.
        """
        rounds = 0
        delay = 0.2
        while self._sends:
            rounds += 1
            sends, self._sends = self._sends, []
            failed: dict[Any, BaseException] = {}
            for key, fut in sends:
                try:
                    await fut
                except Exception as exc:  # any producer error is retried
                    failed[key] = exc
            if not failed:
                break
            first = next(iter(failed.values()))
            log.warning(
                "%s: %d changelog write(s) failed (%r); sending again in %.1fs",
                self.name,
                len(failed),
                first,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
            for key in failed:
                partition = self.partition_for_key(key)
                if key in self.data:
                    self.send_changelog(partition, key, self.data[key])
                else:
                    self.send_changelog(partition, key, None, value_serializer="raw")
        return rounds
