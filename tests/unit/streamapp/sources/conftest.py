"""Fixtures of the source tests: a local aiohttp feed server, a recording sleep."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.unit.streamapp.sources.source_testkit import FeedServer, Sleeps


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    application = web.Application()
    server = TestServer(application)
    feed = FeedServer(server)
    application.router.add_get("/feed", feed.dispatch)
    await server.start_server()
    try:
        yield feed
    finally:
        await server.close()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def refused_url() -> str:
    """A URL on a local port where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/feed"
