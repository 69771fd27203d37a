"""The one layer where streamapp overrides faust-streaming, aiokafka and mode."""

from __future__ import annotations

from streamapp.faust_ext.metadata import fetch_cluster

__all__ = ["fetch_cluster"]
