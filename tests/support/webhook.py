"""A local webhook receiver (aiohttp, on 127.0.0.1) whose answers a test scripts.

Each alert id can be given a list of statuses to answer in turn (then 200), and
``failing`` holds ids answered 500 until removed. Every request is recorded with
its headers, Basic-auth credentials and JSON body.

Example::

    with WebhookServer() as hook:
        hook.script("magnitude:us1", [500, 500])   # then 200
        ... # point ALERT_WEBHOOK_URL at hook.url_with("user", "secret")
        assert [r.status for r in hook.requests_for("magnitude:us1")] == [500, 500, 200]
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["Received", "WebhookServer"]


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    auth: tuple[str, str] | None
    status: int
    at: float


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    return user, password


class WebhookServer:
    """The receiver, run on its own event loop in a thread (a context manager)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Received] = []
        self.scripts: dict[str, list[int]] = {}
        self.failing: set[str] = set()
        self.retry_after: str | None = None
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    # --------------------------------------------------------------- the test's side
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def url_with(self, user: str, password: str) -> str:
        """The URL with ``user:password@`` credentials (for Basic auth)."""
        return f"http://{user}:{password}@127.0.0.1:{self.port}/hook"

    def script(self, alert_id: str, statuses: list[int]) -> None:
        """Answer ``alert_id`` with these statuses in turn, then 200."""
        with self.lock:
            self.scripts[alert_id] = list(statuses)

    def fail(self, alert_id: str) -> None:
        """Answer ``alert_id`` with 500 until :meth:`recover`."""
        with self.lock:
            self.failing.add(alert_id)

    def recover(self, alert_id: str) -> None:
        with self.lock:
            self.failing.discard(alert_id)

    def requests_for(self, alert_id: str) -> list[Received]:
        """The requests that carried ``Idempotency-Key: alert_id``, in order."""
        with self.lock:
            return [
                r for r in self.requests if r.headers.get("Idempotency-Key") == alert_id
            ]

    def wait_for(
        self, alert_id: str, *, status: int = 200, count: int = 1, timeout: float = 30
    ) -> list[Received]:
        """Block until ``count`` requests of ``alert_id`` got ``status``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.requests_for(alert_id) if r.status == status]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"{alert_id}: {count} x HTTP {status} not seen in {timeout}s; got "
            f"{[r.status for r in self.requests_for(alert_id)]}"
        )

    # ------------------------------------------------------------------- the server
    def _answer(self, alert_id: str) -> int:
        with self.lock:
            if alert_id in self.failing:
                return 500
            queue = self.scripts.get(alert_id)
            if queue:
                return queue.pop(0)
            return 200

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        alert_id = request.headers.get("Idempotency-Key", "")
        status = self._answer(alert_id)
        with self.lock:
            self.requests.append(
                Received(
                    request.method,
                    request.path,
                    dict(request.headers),
                    body,
                    _basic(request.headers.get("Authorization")),
                    status,
                    time.monotonic(),
                )
            )
        headers = {}
        if status in (429, 503) and self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        return web.Response(status=status, text="{}", headers=headers)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
