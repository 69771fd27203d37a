"""The durable producer: ``acks=all`` and idempotence on every send.

Overrides ``faust.transport.drivers.aiokafka.Producer._settings_extra``
(faust-streaming 0.15.3), which enables idempotence only inside transactions
(exactly-once mode). Can go when faust has a setting for ``enable_idempotence``
(``producer_acks`` exists in 0.15.3, idempotence does not).

Example::

    class MyTransport(aiokafka_driver.Transport):
        Producer = DurableProducer
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver

__all__ = ["DurableProducer"]


class DurableProducer(aiokafka_driver.Producer):
    """Faust's aiokafka producer with ``acks=all`` and idempotence on every send.

    Faust enables idempotence only inside transactions (exactly-once mode); a
    retried batch could then be written twice. Here the broker deduplicates
    retries per producer id and sequence number, and all in-sync replicas must
    have a record before its delivery future resolves.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}
