"""``/api/openapi.json``: the OpenAPI 3.1 document of the web API.

Example::

    $ curl -s localhost:6066/api/openapi.json | python -m json.tool | head
"""

from __future__ import annotations

import functools
import json

from faust.web import Request, Response, View

from streamapp.app import app
from streamapp.openapi import openapi_document

__all__ = ["OpenApiView", "openapi_json"]


@functools.cache
def openapi_json() -> bytes:
    """The document encoded once (it depends on the code only)."""
    return json.dumps(openapi_document(), indent=1).encode("utf-8")


@app.page("/api/openapi.json")
class OpenApiView(View):
    """The OpenAPI 3.1 document; clients can be generated from it."""

    async def get(self, request: Request) -> Response:
        return self.bytes(
            openapi_json(),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Access-Control-Allow-Origin": "*",
            },
        )
