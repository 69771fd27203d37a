"""The gapless consumer: never commits past an offset that was not acked.

Overrides of ``faust.transport.consumer.Consumer`` (faust-streaming 0.15.3),
pinned in ``setup.cfg`` and guarded by
``tests/unit/streamapp/faust_ext/test_upstream_guard.py``; each can go when the
upstream behaviour it answers is fixed:

- ``_new_offset``: the hole check is off by one and skipped when nothing is
  committed (faust-streaming#606; the open fix is faust-streaming#707).
- ``perform_seek``: partitions nobody committed are not sought back after a
  rebalance dropped a fetched batch.
- ``_drain_messages``: a task per message; flow resumes before the seek updates the
  read offsets, so re-fetched records were dropped and recorded as a gap. A copy of
  faust-streaming 0.15.3's loop with those two changes.

Example::

    consumer = app.consumer           # a GaplessConsumer under DurableTransport
    consumer.holes                    # {tp: (first offset not acked, since)}
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import aiokafka
import aiokafka.errors
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types.tuples import ack_lock
from mode import Service, ServiceT
from mode.utils.futures import notify

from streamapp.faust_ext.batches import Batch, BatchReceiver
from streamapp.faust_ext.topic_watch import StreamConsumerThread

__all__ = ["START_OFFSETS_TIMEOUT", "GaplessConsumer"]

#: Messages delivered between two yields to the event loop (faust's value).
_YIELD_EVERY = 100

#: Seconds :meth:`GaplessConsumer.perform_seek` waits for the first offsets (faust
#: runs the whole seek under ``broker_request_timeout``; past it recovery stops).
START_OFFSETS_TIMEOUT = 10.0


async def _seek_all(
    consumer: aiokafka.AIOKafkaConsumer, targets: list[tuple[Any, int]]
) -> set[Any]:
    """Seek ``(tp, offset)`` pairs on the consumer's own thread; the tps sought."""
    sought: set[Any] = set()
    for tp, offset in targets:
        try:
            consumer.seek(tp, offset)
        except aiokafka.errors.IllegalStateError:  # revoked meanwhile
            continue
        sought.add(tp)
    return sought


class GaplessConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer that never commits past an offset it did not ack.

    faust-streaming's ``Consumer._new_offset`` refuses to commit over a hole at the
    head of the acked offsets only when the hole is wider than one message
    (``min(acked) - committed > 1``, with ``committed`` the next offset to read),
    and not at all when ``committed`` is 0. A single message that was fetched but
    never reached the agent (seen right after a worker joined the group during
    table recovery) was then committed past and lost. Here any hole holds the
    commit back, and is remembered in :attr:`holes` so that ``agents.heal`` can
    seek back and read the message again (at least once; the sinks are idempotent).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        #: tp -> (first offset not acked, monotonic time the hole was first seen).
        self.holes: dict[Any, tuple[int, float]] = {}
        #: tp -> first offset of an assigned partition nobody has committed yet.
        self.start_offsets: dict[Any, int] = {}
        #: topic -> the agents receiving its records a batch at a time (each gets
        #: every batch; an offset is acked once all of them acked it).
        self.receivers: dict[str, list[BatchReceiver]] = {}

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if (
            committed is not None
            and acked
            and not self._gap[tp]
            and (min(acked) > committed)
        ):
            seen = self.holes.get(tp)
            if seen is None or seen[0] != committed:
                self.holes[tp] = (committed, time.monotonic())
            return None
        self.holes.pop(tp, None)
        return super()._new_offset(tp)

    async def perform_seek(self) -> None:
        """Seek to the committed offsets; where none is committed, to the log start.

        faust seeks only partitions with a committed offset and leaves the others
        where the last fetch left them. faust's ``getmany`` drops the rest of a
        fetched batch when a rebalance begins, and relies on this seek to fetch
        it again; in a partition nobody has committed yet those records were
        never fetched again, and the first commit went past them (faust checks
        for a hole only against a committed offset). Seen in the chaos rebalance
        scenario when the clean topic was assigned late: the worker's first
        fetch of two new clean partitions started at offsets 19 and 32, and the
        records before them were never stored (the late-topic scenario lost
        197-322 rows that way). Here such partitions are sought to their first offset
        (``auto_offset_reset=earliest`` would start there too), which also
        becomes their committed offset for the hole check in :meth:`_new_offset`,
        and again on every later call until something is committed. The seeks run
        on the consumer thread, which owns the fetcher's state.
        """
        await super().perform_seek()
        committed = self._committed_offset
        assigned = {tp for tp in self.assignment() if not self._is_changelog_tp(tp)}
        starts = self.start_offsets
        for tp in list(starts):
            if tp not in assigned:
                del starts[tp]
        # Nothing committed: faust's seek left it None, or it still holds the
        # start stored by an earlier call (seeking there again is what faust's
        # seek to a committed offset would do).
        fresh = [
            tp
            for tp in assigned
            if committed.get(tp) is None
            or (tp in starts and committed.get(tp) == starts[tp])
        ]
        unknown = [tp for tp in fresh if tp not in starts]
        if unknown:
            try:
                found = await asyncio.wait_for(
                    self.earliest_offsets(*unknown), START_OFFSETS_TIMEOUT
                )
            except Exception as exc:  # faust's seek already ran; keep its state
                self.log.warning(
                    "No first offsets for %d partitions without a committed offset "
                    "(%r); records fetched before a rebalance may be skipped there",
                    len(unknown),
                    exc,
                )
                found = {}
            for tp in unknown:
                start = found.get(tp)
                if start is not None and start >= 0:
                    starts[tp] = start
        targets = [(tp, starts[tp]) for tp in fresh if tp in starts]
        if not targets:
            return
        thread = self._thread
        client = thread._ensure_consumer()  # noqa: SLF001 -- faust's own accessor
        sought = await thread.call_thread(_seek_all, client, targets)
        for tp, start in targets:
            if tp in sought:
                self._read_offset[tp] = start if start else None
                committed[tp] = start

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return StreamConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # ------------------------------------------------------------ batch path
    def add_receiver(self, receiver: BatchReceiver) -> None:
        """Deliver the records of ``receiver.topics`` to it, a fetch at a time
        (besides any other receiver of the same topics: each gets every batch)."""
        for topic in receiver.topics:
            listed = self.receivers.setdefault(topic, [])
            if receiver not in listed:
                listed.append(receiver)

    def remove_receiver(self, receiver: BatchReceiver) -> None:
        """Stop delivering to ``receiver``."""
        for topic in receiver.topics:
            listed = self.receivers.get(topic)
            if listed is not None and receiver in listed:
                listed.remove(receiver)
                if not listed:
                    del self.receivers[topic]

    def ack_batch(self, batch: Batch) -> int:
        """One receiver's ack of ``batch``; the last one acks every record (what
        ``ack`` does per message).

        While other receivers of the topic have not acked it, nothing is acked
        and 0 is returned. Offsets below the committed offset or already acked
        are skipped, as faust's ``Consumer.ack`` skips them; returns how many
        were new.
        """
        batch.pending -= 1
        if batch.pending > 0:
            return 0
        tp = batch.tp
        new = 0
        with ack_lock:
            committed = self._committed_offset[tp]
            acked_index = self._acked_index[tp]
            acked = self._acked[tp]
            for record in batch.records:
                offset = record.offset
                if (committed is None or offset >= committed) and (
                    offset not in acked_index
                ):
                    acked_index.add(offset)
                    acked.append(offset)
                    new += 1
            self._n_acked += new
            notify(self._waiting_for_ack)
        count_out = getattr(self.app.monitor, "count_batch_out", None)
        if count_out is not None:
            count_out(new)
        return new

    async def _deliver_batch(
        self,
        receivers: list[BatchReceiver],
        tp: Any,
        records: list[Any],
        generation: int,
    ) -> bool:
        """Queue the new records of one partition's fetch, one :class:`Batch` to
        every receiver of the topic; False if a rebalance overtook the delivery
        (the batch is stale: the seek owns the offsets)."""
        read_offset = self._read_offset
        committed = self._committed_offset[tp]
        acked_index = self._acked_index[tp]
        last = read_offset[tp]
        fresh = [
            record
            for record in records
            if not (
                (
                    last is not None
                    and record.offset < last
                    and (committed is None or record.offset < committed)
                )
                or record.offset in acked_index
            )
        ]
        if fresh:
            batch = Batch(tp, fresh, generation, pending=len(receivers))
            for receiver in receivers:
                if self.suspend_flow.is_set():
                    await self.wait_first(receiver.put(batch), self.suspend_flow.wait())
                    return False
                await receiver.put(batch)
                if (
                    self.suspend_flow.is_set()
                    or self.app.consumer_generation_id != generation
                ):
                    return False
            count_in = getattr(self.app.monitor, "count_batch_in", None)
            if count_in is not None:
                count_in(tp, len(fresh), fresh[-1].offset)
        read_offset[tp] = records[-1].offset
        return True

    async def _fetch(self, wait: float) -> tuple[Any, Any, int] | None:
        """One fetch: ``(records by tp, active partitions, generation)`` or None.

        What faust's ``getmany`` does before it yields messages (it has no
        per-partition form): wait for the flow, fetch, and seek back when the
        flow stopped meanwhile.
        """
        records, active = await self._wait_next_records(wait)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return None
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(
                    "exception performing seek when flow not active %r", exc
                )
            return None
        return records, active, generation

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Hand every fetched message on, without a task per message.

        The records of a topic with batch receivers (:func:`receive_batches`) go
        to each of them a partition's fetch at a time (:meth:`_deliver_batch`);
        every other record goes to faust's conductor one message at a time, as in
        faust.

        faust-streaming 0.15.3 delivers each message with
        ``await self.wait_first(callback(message), self.suspend_flow.wait())``: four
        tasks created, an ``asyncio.wait`` and three cancellations per message, so
        that a delivery blocked on a full stream buffer is abandoned when a
        rebalance suspends the flow. That was the largest single cost of consuming
        (py-spy, ``docs/benchmarks.md``). Here the callback is awaited directly
        while the flow runs, and raced against ``suspend_flow`` exactly as before
        once it is suspended.

        Offsets that jump in a pipeline topic are never recorded as a "gap"
        (faust treats a gap as processed and commits over it; only compacted
        changelogs skip offsets legitimately). The chaos broker-restart scenario
        lost ~200 messages in each of three partitions that way: after the
        rebalance faust resumes the flow before ``perform_seek`` has updated the
        read offsets, so records re-fetched from the committed offset were dropped
        as "already read" against the stale read offset, and the next record after
        the seek's update looked like a gap. Here a record below the read offset is
        dropped only when it is also below the committed offset or already acked;
        otherwise it is delivered (again, at worst). Without the gap any hole
        holds the commit back (:meth:`_new_offset`) and ``agents.heal`` reads it
        again.

        A delivery that blocks (a full stream buffer) and is overtaken by a
        rebalance does not record its read offset either: the seek owns them.

        Everything else is faust's loop: read offsets, gaps, ``commit_every``.
        """
        app = self.app
        # mode.Service has ``should_stop`` (also true while stopping) but no public
        # view of the stopped event that faust's loop tests.
        stopped = cast(Service, self)._stopped.is_set  # noqa: SLF001
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set  # noqa: SLF001
        commit_every = self._commit_every
        receivers = self.receivers
        try:
            while not (stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = await self._fetch(wait=1.0)
                await self.sleep(0)
                if fetched is not None and not self.should_stop:
                    records, active, generation = fetched
                    single: dict[Any, Any] = {}
                    for tp, tp_records in records.items():
                        if not (
                            active is None
                            or tp in active
                            or tp in self._buffered_partitions
                        ):
                            continue
                        listed = receivers.get(tp.topic)
                        if not listed:
                            single[tp] = tp_records
                            continue
                        if not self.flow_active or (
                            app.consumer_generation_id != generation
                        ):
                            break
                        app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                        if not await self._deliver_batch(
                            listed, tp, tp_records, generation
                        ):
                            break
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                    else:
                        if single:
                            await self._deliver_singly(single, generation)
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver_singly(self, records: Any, generation: int) -> None:
        """faust's per-message delivery of ``records`` (round robin over tps)."""
        callback = self.callback
        app = self.app
        suspended = self.suspend_flow.is_set
        read_offset = self._read_offset
        acked_index = self._acked_index
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message = self._to_message
        since_yield = 0
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or app.consumer_generation_id != generation:
                break
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            message = to_message(tp, record)
            since_yield += 1
            if since_yield > _YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                committed = self._committed_offset[tp]
                if committed is None or offset < committed:
                    continue  # committed: faust drops it too
                # Below the read offset but not committed: a fetch from a seek
                # that has not updated the read offsets yet. Deliver it unless it
                # was processed already (below).
            if offset in acked_index[tp]:
                continue  # acked (processed), not yet committed
            if (
                last
                and offset - last > 1
                and acks_enabled_for(message.topic)
                and self._is_changelog_tp(tp)
            ):
                # Compacted changelogs skip offsets legitimately. In a pipeline
                # topic a jump means records were skipped: no gap (faust would
                # commit over it); the hole holds the commit back and agents.heal
                # reads it again.
                await self._add_gap(tp, last + 1, offset)
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            if suspended():
                await self.wait_first(callback(message), self.suspend_flow.wait())
            else:
                await callback(message)
                if suspended() or app.consumer_generation_id != generation:
                    # A rebalance began while the delivery waited (full buffer,
                    # flow control). The batch is stale and the rebalance seeks
                    # every partition back to its committed offset: that seek
                    # owns the read offsets.
                    break
            read_offset[tp] = offset
