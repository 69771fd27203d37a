"""Fresh cluster metadata from a plain aiokafka consumer.

aiokafka 0.14.0 has no public call that returns the partitions of every topic
from a fresh metadata request: ``AIOKafkaConsumer.topics()`` fetches the metadata
and returns only the names, and ``partitions_for_topic`` reads the cached
metadata of subscribed topics. This reads the client's fetched cluster directly
(a request for all topics never auto-creates one).

Example::

    cluster = await fetch_cluster(consumer)
    partitions = cluster.partitions_for_topic("earthquakes.raw") or set()
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

__all__ = ["fetch_cluster"]


async def fetch_cluster(consumer: AIOKafkaConsumer) -> Any:
    """The ``ClusterMetadata`` of one fresh metadata request for all topics.

    Depends on ``AIOKafkaClient.fetch_all_metadata`` (aiokafka 0.14.0, guarded by
    ``tests/unit/streamapp/faust_ext/test_upstream_guard.py``); it can go when
    aiokafka returns partitions from a public call.
    """
    client = consumer._client  # noqa: SLF001 -- no public fresh-metadata call
    return await client.fetch_all_metadata()
