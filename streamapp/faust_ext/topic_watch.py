"""The consumer thread: short fetch waits, and a watch for topics missing from metadata.

Overrides of faust-streaming 0.15.3 (``faust.transport.drivers.aiokafka``) and
reads of aiokafka 0.14.0 internals, pinned in ``setup.cfg`` and guarded by
``tests/unit/streamapp/faust_ext/test_upstream_guard.py``:

- ``AIOKafkaConsumerThread._create_worker_consumer`` passes ``fetch_max_wait_ms=1500``
  as a literal (faust has no setting for it); :data:`FETCH_MAX_WAIT_MS` replaces it.
  Can go when faust exposes the setting.
- aiokafka keeps a topic that was still being created when it fetched metadata
  (``LEADER_NOT_AVAILABLE``) out of the cluster until ``metadata_max_age_ms`` (5 min)
  later, and faust's assignor gives its partitions to no member meanwhile
  ("Ignoring missing topic"). :meth:`StreamConsumerThread._watch_topics` refreshes
  the metadata while a subscribed topic is missing. Can go when aiokafka refreshes
  the metadata of a subscribed topic that had no leader yet (not so in 0.14.0).

Example::

    missing = await refresh_missing_topics(consumer)  # {"earthquakes.dead-letter"}
"""

from __future__ import annotations

import aiokafka
from faust.transport.drivers import aiokafka as aiokafka_driver
from mode import Service

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "TOPIC_WATCH_MAX_SECONDS",
    "TOPIC_WATCH_SECONDS",
    "StreamConsumerThread",
    "missing_topics",
    "refresh_missing_topics",
]

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
    # aiokafka 0.14.0 has no public view of the group's subscription (the leader
    # assigns every member's topics) nor of the cached cluster metadata.
    wanted = set(consumer._subscription.topics or ())  # noqa: SLF001
    coordinator = consumer._coordinator  # noqa: SLF001
    wanted |= set(coordinator._group_subscription or ())  # noqa: SLF001
    cluster = consumer._client.cluster  # noqa: SLF001
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
        await consumer._client.force_metadata_update()  # noqa: SLF001
    return missing


class StreamConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread: :data:`FETCH_MAX_WAIT_MS`, and :meth:`_watch_topics`."""

    def _create_worker_consumer(
        self, transport: aiokafka_driver.Transport
    ) -> aiokafka_driver.aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # faust passes fetch_max_wait_ms=1500 as a literal; aiokafka reads the
        # attribute when the consumer starts (after this returns).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # noqa: SLF001
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
