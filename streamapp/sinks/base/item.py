"""What a sink is given and what it hands back: :class:`Item` and :class:`Rejected`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Item", "Rejected"]


@dataclass(frozen=True, slots=True)
class Item:
    """One row for a sink: column values, plus an opaque ``ref`` back to its source
    (the Kafka event) that the sink never looks at."""

    row: Mapping[str, Any]
    ref: Any = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row the database refused for good, with the database's reason."""

    item: Item
    error: str
    sqlstate: str | None = None
