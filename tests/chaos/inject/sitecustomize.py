"""Fault injection for chaos workers, on their PYTHONPATH only when a scenario asks.

``CHAOS_WITHHOLD_TOPIC=<topic>``: the first partition assignment this process makes
as group leader treats ``<topic>`` as missing from the cluster metadata, which is
what faust's assignor does ("Ignoring missing topic") when the topic was still
being created as the group formed. Its partitions are then assigned at the next
rebalance, with records in them and no offset committed.
"""

from __future__ import annotations

import os
from typing import Any


def _withhold_from_first_assignment(topic: str) -> None:
    from faust.assignor import partition_assignor

    assignor = partition_assignor.PartitionAssignor
    original = assignor.assign
    first = [True]

    class Withheld:
        """The cluster metadata, without ``topic``."""

        def __init__(self, cluster: Any) -> None:
            self._cluster = cluster

        def partitions_for_topic(self, name: str) -> Any:
            if name == topic:
                return None
            return self._cluster.partitions_for_topic(name)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cluster, name)

    def assign(self: Any, cluster: Any, member_metadata: Any) -> Any:
        if first[0]:
            first[0] = False
            cluster = Withheld(cluster)
        return original(self, cluster, member_metadata)

    assignor.assign = assign  # type: ignore[method-assign]


_topic = os.environ.get("CHAOS_WITHHOLD_TOPIC", "").strip()
if _topic:
    _withhold_from_first_assignment(_topic)
