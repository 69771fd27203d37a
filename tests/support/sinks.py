"""Stand-ins and data for the agent and sink tests: records, batches, real quakes.

* :class:`FakeMessage`: what an agent reads of a record (topic, partition, offset,
  key, value);
* :class:`FakeReceived`: what the agents receive (a batch of such records, acked as
  a unit);
* :func:`real_quakes`: every feature of the USGS captures as a validated ``Quake``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from models.validation import validate_raw
from tests.support.paths import FIXTURES

__all__ = ["FakeMessage", "FakeReceived", "real_quakes"]


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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
