"""Kafka client options from the settings, shared by Faust and plain aiokafka."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import Any, cast

import aiokafka
import aiokafka.errors
import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TransportT
from mode import Service, ServiceT

from streamapp.settings import Settings

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "TOPIC_WATCH_MAX_SECONDS",
    "TOPIC_WATCH_SECONDS",
    "DurableProducer",
    "DurableTransport",
    "GaplessConsumer",
    "StreamApp",
    "StreamConsumerThread",
    "StreamWorker",
    "aiokafka_kwargs",
    "faust_credentials",
    "missing_topics",
    "refresh_missing_topics",
    "ssl_context",
]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """An SSL context when the security protocol uses TLS, else None."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            settings.kafka_ssl_certfile, keyfile=settings.kafka_ssl_keyfile or None
        )
    return context


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust broker credentials for SSL / SASL, or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if protocol == "SSL" and context is not None:
        return faust.SSLCredentials(context)
    return None


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / admin clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


#: Messages delivered between two yields to the event loop (faust's value).
_YIELD_EVERY = 100

#: How long the broker may hold a fetch that found no new data (faust: 1500 ms).
#: A partition drained while such a fetch is in flight is only fetched again once
#: it returns, so this bounds how long the sink can starve behind the raw topic.
FETCH_MAX_WAIT_MS = 100


#: Seconds between two checks that every subscribed topic is in the metadata.
TOPIC_WATCH_SECONDS = 1.0
#: The longest wait between two refreshes while the same topics stay missing.
TOPIC_WATCH_MAX_SECONDS = 30.0


def missing_topics(consumer: aiokafka.AIOKafkaConsumer) -> set[str]:
    """Subscribed topics (the group's, on its leader) with no partitions in metadata."""
    wanted = set(consumer._subscription.topics or ())
    wanted |= set(consumer._coordinator._group_subscription or ())
    cluster = consumer._client.cluster
    return {topic for topic in wanted if not cluster.partitions_for_topic(topic)}


async def refresh_missing_topics(consumer: aiokafka.AIOKafkaConsumer) -> set[str]:
    """Refresh the metadata if a subscribed topic is missing from it; return those.

    aiokafka leaves a topic that was still being created when it fetched metadata
    (``LEADER_NOT_AVAILABLE``) out of the cluster until its next periodic refresh,
    ``metadata_max_age_ms`` (5 minutes) later, and the group leader's assignor
    gives that topic's partitions to no member meanwhile. A refresh that finds
    the topic changes the leader's metadata snapshot, and aiokafka rejoins the
    group so that the partitions are assigned.
    """
    missing = missing_topics(consumer)
    if missing:
        await consumer._client.force_metadata_update()
    return missing


class StreamConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread: :data:`FETCH_MAX_WAIT_MS`, and :meth:`_watch_topics`."""

    def _create_worker_consumer(
        self, transport: aiokafka_driver.Transport
    ) -> aiokafka_driver.aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # faust passes fetch_max_wait_ms=1500 as a literal; aiokafka reads the
        # attribute when the consumer starts (after this returns).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    @Service.task
    async def _watch_topics(self) -> None:
        """:func:`refresh_missing_topics` every second, backing off to 30 s.

        Seen in the chaos rebalance scenario: two workers started together, one
        created the dead-letter topic while the other, the group leader, joined;
        faust's assignor logged "Ignoring missing topic" and no dead letter was
        stored for five minutes. Runs on the consumer thread's loop, which owns
        the aiokafka client.
        """
        reported: set[str] = set()
        delay = TOPIC_WATCH_SECONDS
        while not self.should_stop:
            await self.sleep(delay)
            consumer = self._consumer
            if consumer is None:
                continue
            try:
                missing = await refresh_missing_topics(consumer)
            except Exception as exc:  # the watch must never stop the consumer thread
                self.log.warning("Metadata refresh for missing topics failed: %r", exc)
                continue
            if missing - reported:
                self.log.warning(
                    "Subscribed topics missing from the metadata, refreshing: %s",
                    ", ".join(sorted(missing)),
                )
            # A topic that stays missing (deleted, never created) is asked for
            # less and less often: 1, 2, 4 ... 30 s.
            if missing and missing == reported:
                delay = min(delay * 2, TOPIC_WATCH_MAX_SECONDS)
            else:
                delay = TOPIC_WATCH_SECONDS
            reported = missing


class DurableProducer(aiokafka_driver.Producer):
    """Faust's aiokafka producer with ``acks=all`` and idempotence on every send.

    Faust enables idempotence only inside transactions (exactly-once mode); a
    retried batch could then be written twice. Here the broker deduplicates
    retries per producer id and sequence number, and all in-sync replicas must
    have a record before its delivery future resolves.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


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
        sought = await thread.call_thread(_seek_all, thread._ensure_consumer(), targets)
        for tp, start in targets:
            if tp in sought:
                self._read_offset[tp] = start if start else None
                committed[tp] = start

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return StreamConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Hand every fetched message to the conductor, without a task per message.

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
        callback = self.callback
        app = self.app
        stopped = cast(Service, self)._stopped.is_set
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set
        suspended = self.suspend_flow.is_set
        read_offset = self._read_offset
        acked_index = self._acked_index
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in records:
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
                            # Below the read offset but not committed: a fetch from
                            # a seek that has not updated the read offsets yet.
                            # Deliver it unless it was processed already (below).
                        if offset in acked_index[tp]:
                            continue  # acked (processed), not yet committed
                        if (
                            last
                            and offset - last > 1
                            and acks_enabled_for(message.topic)
                            and self._is_changelog_tp(tp)
                        ):
                            # Compacted changelogs skip offsets legitimately. In a
                            # pipeline topic a jump means records were skipped: no
                            # gap (faust would commit over it); the hole holds the
                            # commit back and agents.heal reads it again.
                            await self._add_gap(tp, last + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if suspended():
                            await self.wait_first(
                                callback(message), self.suspend_flow.wait()
                            )
                        else:
                            generation = app.consumer_generation_id
                            await callback(message)
                            if suspended() or app.consumer_generation_id != generation:
                                # A rebalance began while the delivery waited (full
                                # buffer, flow control). The batch is stale and the
                                # rebalance seeks every partition back to its
                                # committed offset: that seek owns the read offsets.
                                break
                        read_offset[tp] = offset
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


class DurableTransport(aiokafka_driver.Transport):
    """The aiokafka transport: :class:`DurableProducer`, :class:`GaplessConsumer`."""

    Producer = DurableProducer
    Consumer = GaplessConsumer


class StreamWorker(faust.Worker):
    """``faust worker`` without the terminal spinner.

    At ``-l warn`` and above faust sets the ROOT logger to DEBUG so that its spinner
    handler sees every record: each ``log.debug`` in every library (aiokafka logs
    one per message sent) then builds a record that the console handler drops --
    4 % of the worker's CPU in py-spy. Without the spinner the levels stay as set.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None


class StreamApp(faust.App):
    """``faust.App`` whose producer is durable (see :class:`DurableProducer`)."""

    def _new_transport(self) -> TransportT:
        return DurableTransport(self.conf.broker_consumer, self)
