"""The batch receive path: an agent receives what one fetch returned, and acks it.

faust-streaming 0.15.3 hands every fetched message to the conductor, which wraps
it in an ``Event``, queues it per stream, and the stream iterator, ``noack_take``
and the per-event ack each touch it again: the largest share of the worker's CPU
per event, paid on the raw and again on the clean topic. Here an agent that
reads its topic with :func:`receive_batches` gets the records of one fetch for
one partition as one :class:`Batch` (aiokafka's records, no ``Message`` and no
``Event`` per record), gathered into a :class:`Received` of up to
``max_records``, and acks it as a unit once its output is safe
(:meth:`Received.ack`). The guarantees are the consumer's
(:class:`~streamapp.faust_ext.consumer.GaplessConsumer`): an offset is committed
only once acked and with nothing unacked below it; a batch fetched before a
rebalance is dropped unacked (the rebalance seeks every partition back to its
committed offset, so it is fetched again).

Several agents may receive the same topic (fan-out): each gets every batch, the
same :class:`Batch` object, and its records are acked for the consumer only
when the last of them acks it (:attr:`Batch.pending`). A batch one of them
drops as stale stays unacked and is fetched again after the rebalance's seek;
an agent that handled it already sees it again (every consumer is idempotent).

The agent stays a faust agent (``@app.agent(topic)``): faust declares and
subscribes its topic; only the delivery changes. Can go when faust has a batch
delivery of its own.

Example::

    @app.agent(raw_topic)
    async def validate(stream):
        async for received in receive_batches(stream, max_records=1000, within=0.1):
            await deliver(route(received.records))
            received.ack()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from faust import Stream
from faust.types import TP, AppT, EventT, StreamT

if TYPE_CHECKING:
    from streamapp.faust_ext.consumer import GaplessConsumer

__all__ = [
    "RECEIVER_QUEUE_BATCHES",
    "Batch",
    "BatchReceiver",
    "Received",
    "Record",
    "receive_batches",
]

#: Fetched batches queued per agent before the fetch loop waits (backpressure).
#: A batch is one partition's fetch (up to ``consumer_max_fetch_size``, 1 MiB).
RECEIVER_QUEUE_BATCHES = 8


class Record(Protocol):
    """What an agent reads of a received record (aiokafka's ``ConsumerRecord``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Batch:
    """The records one fetch returned for one partition, in offset order.

    ``pending`` is how many receivers have yet to ack it (one per agent reading
    the topic); the consumer acks its records when it reaches 0.
    """

    __slots__ = ("generation", "pending", "records", "tp")

    def __init__(
        self, tp: TP, records: Sequence[Any], generation: int, pending: int = 1
    ) -> None:
        self.tp = tp
        self.records = records
        #: The consumer generation the batch was fetched in.
        self.generation = generation
        #: Receivers that have not acked it yet.
        self.pending = pending

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        first = self.records[0].offset if self.records else None
        return f"<Batch {self.tp.topic}[{self.tp.partition}] @{first} x{len(self)}>"


class Received:
    """Batches an agent handles together; :meth:`ack` acks all of their records.

    ``records`` are the batches' records in order (per partition by offset).
    """

    __slots__ = ("_acked", "_consumer", "batches", "records")

    def __init__(self, consumer: GaplessConsumer, batches: Sequence[Batch]) -> None:
        self._consumer = consumer
        self._acked = False
        self.batches = batches
        self.records: list[Record] = [r for b in batches for r in b.records]

    def __len__(self) -> int:
        return len(self.records)

    def ack(self) -> int:
        """Ack every record (after the output is safe); returns how many were new
        (0 while another agent reading the same topic has not acked them yet).
        Acking again is a no-op: each agent counts once per batch."""
        if self._acked:
            return 0
        self._acked = True
        ack = self._consumer.ack_batch
        return sum(ack(batch) for batch in self.batches)


class BatchReceiver:
    """The queue of fetched batches of one agent's topics.

    The consumer's fetch loop :meth:`put`\\ s batches (waiting while the queue is
    full); the agent :meth:`take`\\ s them. Batches of an older consumer generation,
    or taken while a rebalance suspends the flow, are dropped unacked.
    """

    def __init__(
        self,
        app: AppT,
        topics: Iterable[str],
        maxsize: int = RECEIVER_QUEUE_BATCHES,
    ) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize)
        #: Batches dropped as stale (fetched before a rebalance).
        self.dropped = 0

    def _fresh(self, batch: Batch) -> bool:
        consumer: Any = self.app.consumer
        if (
            batch.generation != self.app.consumer_generation_id
            or consumer.suspend_flow.is_set()
        ):
            self.dropped += 1
            return False
        return True

    async def put(self, batch: Batch) -> None:
        """Queue a fetched batch; waits while the agent is ``maxsize`` behind."""
        await self.queue.put(batch)

    def clear(self) -> None:
        """Drop every queued batch (unacked: they are fetched again)."""
        while not self.queue.empty():
            self.queue.get_nowait()
            self.dropped += 1

    async def take(self, max_records: int, within: float) -> list[Batch]:
        """Fresh batches with at least one record: up to ``max_records`` records
        or what arrived within ``within`` seconds of the first one."""
        queue = self.queue
        taken: list[Batch] = []
        count = 0
        while not taken:
            batch = await queue.get()
            if self._fresh(batch):
                taken.append(batch)
                count = len(batch)
        deadline = time.monotonic() + within
        while count < max_records:
            if queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
            else:
                batch = queue.get_nowait()
            if self._fresh(batch):
                taken.append(batch)
                count += len(batch)
        return taken


async def receive_batches(
    stream: StreamT[Any], *, max_records: int, within: float
) -> AsyncIterator[Received]:
    """Received batches of the agent's topics: up to ``max_records`` records or
    what arrived within ``within`` seconds (see the module docstring).

    ``stream`` is the stream faust passes the agent; it is not iterated (its
    topic is subscribed by faust; the consumer delivers its records here). A
    stream of a channel that is no Kafka topic (faust's agent test context, an
    in-memory channel) is read through faust's own ``noack_take`` instead.
    """
    app = stream.app
    topics = getattr(stream.channel, "topics", None)
    if not topics or not app.conf.broker[0].scheme.startswith("kafka"):
        # A channel, or faust's agent test context: faust's own delivery.
        async for received in _received_events(stream, max_records, within):
            yield received
        return
    consumer: Any = app.consumer
    if not hasattr(consumer, "add_receiver"):
        raise TypeError(
            f"receive_batches needs streamapp's GaplessConsumer, not {consumer!r}"
        )
    receiver = BatchReceiver(app, topics)
    consumer.add_receiver(receiver)
    try:
        while True:
            batches = await receiver.take(max_records, within)
            yield Received(consumer, batches)
    finally:
        consumer.remove_receiver(receiver)


class _EventRecord:
    """A faust event seen as a :class:`Record`."""

    __slots__ = ("key", "offset", "partition", "topic", "value")

    def __init__(self, event: EventT) -> None:
        message = event.message
        self.topic = message.topic
        self.partition = message.partition
        self.offset = message.offset
        self.key = _as_bytes(message.key)
        self.value = _as_bytes(message.value)


def _as_bytes(value: Any) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else bytes(value)


class _ReceivedEvents(Received):
    """Events a faust stream delivered, received and acked like batches."""

    __slots__ = ("_events",)

    def __init__(self, events: Sequence[EventT]) -> None:
        self._events = events
        self.batches = ()
        self.records = [_EventRecord(event) for event in events]

    def ack(self) -> int:
        return sum(bool(event.ack()) for event in self._events)


async def _received_events(
    stream: StreamT[Any], max_records: int, within: float
) -> AsyncIterator[Received]:
    # noack_take yields the Event objects and leaves acking to the caller;
    # StreamT does not declare it, faust.Stream does.
    async for events in cast(Stream[Any], stream).noack_take(
        max_records, within=within
    ):
        yield _ReceivedEvents(events)
