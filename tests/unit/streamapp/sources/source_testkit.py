"""Shared helpers of the source tests: a scripted feed server, recording fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "usgs"
FEED_2024 = FIXTURES / "all_hour_2024-05-31.geojson"
FEED_2017 = FIXTURES / "all_hour_2017-12-03.geojson"

#: The fixed instant the injected clocks return.
NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fixed_clock() -> datetime:
    return NOW


@dataclass
class FeedServer:
    """A local HTTP server whose ``/feed`` answers are scripted per test."""

    server: TestServer
    handlers: list[Handler] = field(default_factory=list)
    requests: int = 0

    def url(self, path: str = "/feed") -> str:
        return str(self.server.make_url(path))

    def script(self, *handlers: Handler) -> None:
        """Answer the next requests with ``handlers`` in turn (the last one repeats)."""
        self.handlers = list(handlers)
        self.requests = 0

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        index = min(self.requests, len(self.handlers) - 1)
        self.requests += 1
        return await self.handlers[index](request)


@dataclass
class Sleeps:
    """An injected ``sleep`` that records the waits instead of waiting."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)
