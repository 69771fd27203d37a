"""The sink contract: buffer items, flush them in batches, retry and bisect failures."""

from __future__ import annotations

from streamapp.sinks.base.item import Item, Rejected
from streamapp.sinks.base.sink import Sink

__all__ = ["Item", "Rejected", "Sink"]
