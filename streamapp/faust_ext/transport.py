"""The app class and the transport that install the layer's producer and consumer.

``faust.App._new_transport`` (faust-streaming 0.15.3) builds the transport from the
broker URL's scheme; faust has no ``Transport=`` setting, so :class:`StreamApp`
overrides it. Can go when faust accepts a transport class as a setting.

Example::

    app = StreamApp("streamapp", broker="kafka://localhost:9092")
    assert isinstance(app.transport, DurableTransport)
"""

from __future__ import annotations

from pathlib import Path

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TransportT

from streamapp.faust_ext.boot import WaitForKafka, WaitingBootStrategy
from streamapp.faust_ext.consumer import GaplessConsumer
from streamapp.faust_ext.producer import DurableProducer

__all__ = ["DurableTransport", "StreamApp"]


class DurableTransport(aiokafka_driver.Transport):
    """The aiokafka transport: :class:`DurableProducer`, :class:`GaplessConsumer`."""

    Producer = DurableProducer
    Consumer = GaplessConsumer


class StreamApp(faust.App):
    """``faust.App`` whose producer is durable (see :class:`DurableProducer`).

    Set :attr:`kafka_wait` to hold the Kafka services until a broker answers
    (see :mod:`streamapp.faust_ext.boot`).
    """

    BootStrategy = WaitingBootStrategy
    #: Waits for the broker before the producer starts; None: faust's boot order.
    kafka_wait: WaitForKafka | None = None

    def _new_transport(self) -> TransportT:
        return DurableTransport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        """Create the data directory's parents (faust creates only the last level)."""
        Path(self.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()
