"""A local HTTP server playing the USGS GeoJSON feed, and the real captures."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

from tests.support.paths import FIXTURES

__all__ = ["FeedServer", "load_capture"]


def load_capture(name: str) -> dict[str, Any]:
    """A real USGS capture from tests/fixtures/usgs."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FeedServer:
    """A local HTTP server that serves a GeoJSON document the test can swap.

    Use it as a context manager: ``with FeedServer() as feed: feed.serve(doc)``;
    ``feed.status`` sets the HTTP status, ``feed.requests`` counts the GETs.
    """

    def __init__(self) -> None:
        self.body = b'{"type": "FeatureCollection", "features": []}'
        self.status = 200
        self.requests = 0
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                feed.requests += 1
                self.send_response(feed.status)
                self.send_header("Content-Type", "application/geo+json")
                self.send_header("Content-Length", str(len(feed.body)))
                self.end_headers()
                self.wfile.write(feed.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/all_hour.geojson"

    def serve(self, document: dict[str, Any]) -> None:
        """Answer every following GET with ``document``."""
        self.body = json.dumps(document).encode("utf-8")

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
