"""Fixtures of the view tests: the app's real routes on a fresh aiohttp test server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import streamapp.views.api
import streamapp.views.dashboard
import streamapp.views.health
import streamapp.views.metrics  # noqa: F401 - registers the pages
from streamapp.app import app


def _copy_routes() -> web.Application:
    """A new aiohttp application with every route the worker's web server has.

    The worker's own application is bound to the worker's loop; each test gets a
    fresh one (same view instances and handlers) on its own loop.
    """
    fresh = web.Application()
    for resource in app.web.web_app.router.resources():
        if isinstance(resource, web.StaticResource):
            info = resource.get_info()
            fresh.router.add_static(info["prefix"] + "/", info["directory"])
            continue
        for route in resource:
            fresh.router.add_route(route.method, resource.canonical, route.handler)
    return fresh


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    server = TestServer(_copy_routes())
    async with TestClient(server) as test_client:
        yield test_client
