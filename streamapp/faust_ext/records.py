"""The declared fields of a ``faust.Record`` class.

faust-streaming 0.15.3 keeps a Record's field names, in declaration order, in
``Record._options.fields`` and has no public accessor for them.

Example::

    record_fields(Quake)  # ("event_id", "time", "updated", ...)
"""

from __future__ import annotations

import faust

__all__ = ["record_fields"]


def record_fields(record: type[faust.Record]) -> tuple[str, ...]:
    """The field names of ``record`` in declaration order."""
    return tuple(record._options.fields)  # noqa: SLF001 -- no public accessor
