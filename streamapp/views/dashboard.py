"""The live dashboard at ``/`` and ``/dashboard/``; its assets under ``/static/``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from faust.web import Request, Response, View

from streamapp.app import app

__all__ = [
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "DashboardRedirectView",
    "DashboardView",
    "RootView",
]

#: The dashboard's HTML, JS and CSS, shipped inside the package (works offline).
STATIC_DIR = Path(str(resources.files("streamapp") / "static"))

#: Only our own scripts, styles and API: nothing from other origins, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

app.web.add_static("/static/", STATIC_DIR)


def _page() -> bytes:
    return (STATIC_DIR / "index.html").read_bytes()


@app.page("/dashboard/")
class DashboardView(View):
    """The dashboard page; its script polls the JSON API."""

    async def get(self, request: Request) -> Response:
        return self.bytes(
            _page(), content_type="text/html", headers=dict(SECURITY_HEADERS)
        )


@app.page("/dashboard")
class DashboardRedirectView(View):
    """``/dashboard`` without the slash: a permanent redirect."""

    async def get(self, request: Request) -> Response:
        return self.bytes(b"", status=301, headers={"Location": "/dashboard/"})


@app.page("/")
class RootView(View):
    """``/`` shows the dashboard too (it replaces Faust's ``{"status": "OK"}``)."""

    async def get(self, request: Request) -> Response:
        return self.bytes(
            _page(), content_type="text/html", headers=dict(SECURITY_HEADERS)
        )
