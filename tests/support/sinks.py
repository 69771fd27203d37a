"""Stand-ins and data for the sink tests: Kafka events of the agents, real quakes.

* :class:`FakeMessage` / :class:`FakeEvent`: what an agent reads of a Faust event
  (topic, partition, offset, key, value) and its ``ack()``;
* :class:`FakeReceived`: what ``agents.store`` receives (a batch of records of
  that shape, acked as a unit);
* :func:`real_quakes`: every feature of the USGS captures as a validated ``Quake``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from models.validation import validate_raw
from tests.support.paths import FIXTURES

__all__ = ["FakeEvent", "FakeMessage", "FakeReceived", "real_quakes"]


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeEvent:
    message: FakeMessage
    acked: list[int]

    @property
    def value(self) -> bytes | None:
        return self.message.value

    @property
    def key(self) -> bytes | None:
        return self.message.key

    def ack(self) -> bool:
        self.acked.append(self.message.offset)
        return True


@dataclass
class FakeReceived:
    """A received batch: its records, and the offsets :meth:`ack` acked."""

    records: list[FakeMessage]
    acked: list[int]

    def __len__(self) -> int:
        return len(self.records)

    def ack(self) -> int:
        self.acked.extend(record.offset for record in self.records)
        return len(self.records)


def real_quakes() -> list[Any]:
    """The ``Quake`` of every feature of every capture (more than 100)."""
    quakes = []
    for path in sorted(FIXTURES.glob("*.geojson")):
        collection = json.loads(path.read_text(encoding="utf-8"))
        for offset, feat in enumerate(collection["features"]):
            envelope = {
                "feature": feat,
                "fetched_at": "2024-05-31T23:30:00.123456Z",
                "source_url": f"file://{path.name}",
            }
            quakes.append(
                validate_raw(
                    json.dumps(envelope).encode(),
                    max_bytes=1024 * 1024,
                    max_depth=32,
                    partition=offset % 4,
                    offset=offset,
                )
            )
    assert len(quakes) > 100
    return quakes
