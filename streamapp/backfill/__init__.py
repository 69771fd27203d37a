"""Backfill: history from the USGS FDSN event service into the raw topic.

``faust -A streamapp backfill --since 2024-01-01 --until 2024-02-01`` (see
:mod:`streamapp.commands.backfill` and ``docs/backfill.md``) walks the range in
slices that fit one query, produces each feature in the live fetcher's envelope at
a bounded rate, and keeps its progress in PostgreSQL so it resumes where it stopped.

Usage::

    from streamapp.backfill import Backfill, FdsnClient, Params, ProgressStore

    client = FdsnClient.from_settings(settings)
    summary = await Backfill(params, client, ProgressStore(settings), send,
                             key_of=dedup_key).run()
"""

from streamapp.backfill.fdsn import FdsnClient, Page, TooManyEvents, Window
from streamapp.backfill.progress import Params, ProgressStore, RunState
from streamapp.backfill.rate import TokenBucket
from streamapp.backfill.run import Backfill, Progress, Summary

__all__ = [
    "Backfill",
    "FdsnClient",
    "Page",
    "Params",
    "Progress",
    "ProgressStore",
    "RunState",
    "Summary",
    "TokenBucket",
    "TooManyEvents",
    "Window",
]
