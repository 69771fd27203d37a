"""A local HTTP server emulating the USGS FDSN event service (``count``, ``query``).

The events are deterministic synthetic copies of real captured features (the
USGS captures of ``tests/fixtures/usgs``): event ``i`` of ``n`` has the id
``fd<tag><i>``, a time spread evenly over the emulated range, ``updated`` one
minute later, and the location, magnitude and other properties of a captured
feature. Indices in ``bad`` get an impossible latitude (the validator
dead-letters them). The server answers like the real service: ``count`` a plain
integer, ``query`` a FeatureCollection ordered by time, HTTP 400 naming the limit
when a query matches more than ``limit`` events, 204 for an empty range. Faults are
queued with :meth:`FdsnEmulator.inject` (429 with ``Retry-After``, 503, a body cut
off mid-way, a slow answer); every request is logged in :attr:`requests`.

Usage::

    with FdsnEmulator(since, until, count=25_000) as fdsn:
        fdsn.inject(Fault("query", status=429, retry_after="1"))
        fdsn.inject(Fault("query", status=0, delay=5.0))  # slow, then the answer
        ... BACKFILL_URL=fdsn.url ...
        assert fdsn.requests[0].method == "count"
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.support.paths import FIXTURES

__all__ = ["CAPTURES", "Fault", "FdsnEmulator", "Request", "captured_features"]

#: The captures whose features the synthetic events copy.
CAPTURES = (
    "all_day_2014-04-14.geojson",
    "all_hour_2017-12-03.geojson",
    "all_hour_2024-05-31.geojson",
    "significant_week_2017.geojson",
)


def captured_features() -> list[dict[str, Any]]:
    """Every feature of the captures (the templates of the synthetic events)."""
    out: list[dict[str, Any]] = []
    for name in CAPTURES:
        doc = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
        out.extend(f for f in doc["features"] if isinstance(f, dict))
    return out


@dataclass
class Fault:
    """One injected answer for the next request to ``method`` (None: any)."""

    method: str | None = "query"
    #: The HTTP status answered instead of the real answer; 0: the real answer
    #: (after ``delay``, or cut off with ``cut``).
    status: int = 503
    retry_after: str | None = None
    #: Send the headers and half of the real body, then drop the connection.
    cut: bool = False
    #: Seconds to wait before answering (a slow service; the client may time out).
    #: The request is logged on arrival with status 0, then again when answered.
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    """One request the emulator received."""

    at: float
    method: str
    params: dict[str, str]
    status: int
    events: int | None = None


def _ms(raw: str) -> int:
    when = datetime.fromisoformat(raw)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass
class FdsnEmulator:
    """The emulated service over ``[since, until)`` with ``count`` events."""

    since: datetime
    until: datetime
    count: int
    limit: int = 20_000
    bad: Iterable[int] = ()
    tag: str = "x"
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        templates = captured_features()
        start = int(self.since.timestamp() * 1000)
        span = int(self.until.timestamp() * 1000) - start
        self.bad = frozenset(self.bad)
        self.times: list[int] = []
        self.features: list[dict[str, Any]] = []
        for i in range(self.count):
            t = start + (span * (2 * i + 1)) // (2 * self.count)
            feature = copy.deepcopy(templates[i % len(templates)])
            fid = f"fd{self.tag}{i:07d}"
            feature["id"] = fid
            props = feature["properties"]
            props.update(time=t, updated=t + 60_000, code=fid[2:], ids=f",{fid},")
            props["net"] = "fd"
            if i in self.bad:
                feature["geometry"]["coordinates"][1] = 999.0
            self.times.append(t)
            self.features.append(feature)
        self._encoded: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ----------------------------------------------------------------- the test side
    @property
    def url(self) -> str:
        """The service's base URL (what ``BACKFILL_URL`` takes)."""
        return f"http://127.0.0.1:{self.port}/fdsnws/event/1"

    @property
    def ids(self) -> list[str]:
        """Every event id, in time order."""
        return [f["id"] for f in self.features]

    def inject(self, *faults: Fault) -> None:
        """Queue faults: each answers the next request to its method, once."""
        with self._lock:
            self.faults.extend(faults)

    def log(self, method: str | None = None) -> list[Request]:
        """The requests received so far (of ``method`` only, if given)."""
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def __enter__(self) -> FdsnEmulator:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/fdsnws/event/1/{method}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self._runner = runner
            self.port = runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the FDSN emulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # --------------------------------------------------------------- the server side
    def _select(self, params: dict[str, str]) -> list[int]:
        lo = bisect.bisect_left(self.times, _ms(params["starttime"]))
        hi = bisect.bisect_right(self.times, _ms(params["endtime"]))
        chosen = range(lo, hi)
        minmag = params.get("minmagnitude")
        keys = ("minlongitude", "minlatitude", "maxlongitude", "maxlatitude")
        box = [float(params[k]) if k in params else None for k in keys]
        if minmag is None and all(v is None for v in box):
            return list(chosen)
        out = []
        for i in chosen:
            props = self.features[i]["properties"]
            lon, lat = self.features[i]["geometry"]["coordinates"][:2]
            if minmag is not None and (
                props.get("mag") is None or props["mag"] < float(minmag)
            ):
                continue
            min_lon, min_lat, max_lon, max_lat = box
            if (
                min_lon is not None
                and min_lat is not None
                and max_lon is not None
                and max_lat is not None
                and not (min_lon <= lon <= max_lon and min_lat <= lat <= max_lat)
            ):
                continue
            out.append(i)
        return out

    def _encode(self, i: int) -> bytes:
        data = self._encoded.get(i)
        if data is None:
            data = self._encoded[i] = json.dumps(self.features[i]).encode()
        return data

    def _record(
        self, method: str, params: dict[str, str], status: int, n: int | None
    ) -> None:
        with self._lock:
            self.requests.append(Request(time.monotonic(), method, params, status, n))

    def _next_fault(self, method: str) -> Fault | None:
        with self._lock:
            for k, fault in enumerate(self.faults):
                if fault.method in (None, method):
                    return self.faults.pop(k)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = dict(request.query)
        fault = self._next_fault(method)
        if fault is not None and fault.delay:
            self._record(method, params, 0, None)  # held back (status 0)
            await asyncio.sleep(fault.delay)
        if fault is not None and not fault.cut and fault.status:
            self._record(method, params, fault.status, None)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return web.Response(
                status=fault.status, text=f"Error {fault.status}", headers=headers
            )
        if method not in ("count", "query"):
            self._record(method, params, 404, None)
            return web.Response(status=404, text="Error 404: unknown method")
        try:
            chosen = self._select(params)
        except (KeyError, ValueError) as exc:
            self._record(method, params, 400, None)
            return web.Response(status=400, text=f"Error 400: Bad Request\n{exc}")
        if method == "count":
            self._record(method, params, 200, len(chosen))
            if params.get("format") == "geojson":
                return web.json_response(
                    {"count": len(chosen), "maxAllowed": self.limit}
                )
            return web.Response(text=str(len(chosen)))
        if len(chosen) > self.limit:
            self._record(method, params, 400, len(chosen))
            return web.Response(
                status=400,
                text=(
                    "Error 400: Bad Request\n\n"
                    f"{len(chosen)} matching events exceeds search limit of "
                    f"{self.limit}. Modify the search to match fewer events.\n"
                ),
            )
        if not chosen:
            self._record(method, params, 204, 0)
            return web.Response(status=204)
        body = (
            b'{"type":"FeatureCollection","metadata":{"status":200,"count":'
            + str(len(chosen)).encode()
            + b'},"features":['
            + b",".join(self._encode(i) for i in chosen)
            + b"]}"
        )
        if fault is not None and fault.cut:
            self._record(method, params, 200, None)
            resp = web.StreamResponse(status=200)
            resp.content_type = "application/json"
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        self._record(method, params, 200, len(chosen))
        return web.Response(body=body, content_type="application/json")
