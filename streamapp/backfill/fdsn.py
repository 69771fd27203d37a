"""A client of the FDSN event web service (USGS): ``count`` and ``query`` of a range.

Usage::

    client = FdsnClient.from_settings(settings)
    window = Window(since, until, min_magnitude=4.5)
    total = await client.count(window)           # None when the service cannot say
    page = await client.query(window)            # raises TooManyEvents past the limit
    await client.close()

Every request waits for a token of the request bucket first (pacing), times out
after ``timeout`` seconds and is retried like the live source: connection errors,
timeouts, cut-off bodies, HTTP 5xx and 429 after the server's ``Retry-After`` (up
to ``max_retry_after``) or an exponential backoff with full jitter
(:func:`~streamapp.backoff.backoff_delay`). A query that matches more events than
the service returns answers HTTP 400 naming the limit: :class:`TooManyEvents`, so
the caller splits the range. An empty range answers 204 (or 200 with no features).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import aiohttp

from streamapp import __version__
from streamapp.backfill.rate import TokenBucket
from streamapp.exceptions import (
    SourceError,
    SourceResponseError,
    SourceUnavailable,
    TooManyEvents,
)
from streamapp.sources.base import (
    call_with_retries,
    parse_feature_collection,
    redact_source_url,
    utcnow,
)
from streamapp.sources.usgs import parse_retry_after

if TYPE_CHECKING:
    from streamapp.settings import Settings

__all__ = [
    "FdsnClient",
    "Page",
    "TooManyEvents",
    "Window",
    "format_time",
]

log = logging.getLogger(__name__)

#: Bytes read from the socket at a time while the body is checked against the cap.
CHUNK_BYTES = 64 * 1024
#: Body bytes allowed per event of a full page (a USGS feature is about 1 KB).
BYTES_PER_EVENT = 4096
#: The longest ``Retry-After`` waited out; a longer one stops the run (resume later).
MAX_RETRY_AFTER = 300.0
#: Words of a 400 answer that say the query matched too many events.
_TOO_MANY = re.compile(r"(exceed|too many|limit|maximum|max allowed)", re.IGNORECASE)


T = TypeVar("T")


def format_time(when: datetime) -> str:
    """``when`` as the service's time parameter: UTC, ISO-8601 with milliseconds."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3]


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[since, until)`` and the event filters."""

    since: datetime
    until: datetime
    min_magnitude: float | None = None
    #: ``(min_lon, min_lat, max_lon, max_lat)``
    bbox: tuple[float, float, float, float] | None = None

    def params(self) -> dict[str, str]:
        """The query parameters (``endtime`` is inclusive: one millisecond less)."""
        out = {
            "starttime": format_time(self.since),
            "endtime": format_time(self.until - timedelta(milliseconds=1)),
        }
        if self.min_magnitude is not None:
            out["minmagnitude"] = f"{self.min_magnitude:g}"
        if self.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = self.bbox
            out.update(
                minlongitude=f"{min_lon:g}",
                minlatitude=f"{min_lat:g}",
                maxlongitude=f"{max_lon:g}",
                maxlatitude=f"{max_lat:g}",
            )
        return out

    def part(self, since: datetime, until: datetime) -> Window:
        """The same filters over ``[since, until)``."""
        return Window(since, until, self.min_magnitude, self.bbox)


@dataclass(frozen=True)
class Page:
    """The features of one query and what they came from."""

    features: list[Any]
    url: str
    fetched_at: datetime
    size_bytes: int


def _parse_count(status: int, body: bytes, content_type: str | None) -> int | None:
    """The number of a ``count`` answer: a plain integer, or ``{"count": N}``."""
    if status == 204:
        return 0
    text = body.decode("utf-8", errors="replace").strip()
    if text.isdigit():
        return int(text)
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    value = doc.get("count") if isinstance(doc, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


class FdsnClient:
    """Counts and queries time ranges of an FDSN event service; see the module."""

    def __init__(
        self,
        base_url: str,
        *,
        requests_per_second: float = 2.0,
        max_events: int = 20_000,
        timeout: float = 20.0,
        max_retries: int = 4,
        max_bytes: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = MAX_RETRY_AFTER,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utcnow,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = redact_source_url(self.base_url)
        self.max_events = max_events
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.max_bytes = max_bytes or max(
            20 * 1024 * 1024, max_events * BYTES_PER_EVENT
        )
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.bucket = bucket or TokenBucket(requests_per_second, 1.0, sleep=sleep)
        self.requests = 0
        self.retries = 0
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, requests_per_second: float | None = None
    ) -> FdsnClient:
        """A client of ``BACKFILL_URL`` with the source's timeout and retries."""
        return cls(
            settings.backfill_url,
            requests_per_second=requests_per_second
            or settings.backfill_requests_per_second,
            max_events=settings.backfill_max_events_per_query,
            timeout=settings.source_timeout_seconds,
            max_retries=settings.source_max_retries,
        )

    async def count(self, window: Window) -> int | None:
        """How many events ``window`` matches, or None when the service cannot say."""
        try:
            return await self._get("count", window.params(), _parse_count)
        except SourceError as exc:
            log.warning("backfill: the count of %s failed: %s", self.url, exc)
            return None

    async def query(self, window: Window) -> Page:
        """The features of ``window`` (oldest first); :class:`TooManyEvents` past the
        service's limit, :class:`SourceError` when it fails for good."""
        params = {"format": "geojson", "orderby": "time-asc", **window.params()}
        url = f"{self.url}/query?{urlencode(params)}"

        def parse(status: int, body: bytes, content_type: str | None) -> Page:
            fetched_at = self._clock()
            if status == 204:
                return Page([], url, fetched_at, 0)
            try:
                features = parse_feature_collection(
                    body, url=url, content_type=content_type
                )
            except SourceResponseError as exc:
                # A cut-off or garbled page is worth asking for again.
                raise SourceUnavailable(str(exc)) from exc
            return Page(features, url, fetched_at, len(body))

        return await self._get("query", params, parse)

    async def close(self) -> None:
        """Close the HTTP session."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # ------------------------------------------------------------------ internals
    async def _get(
        self,
        method: str,
        params: dict[str, str],
        parse: Callable[[int, bytes, str | None], T],
    ) -> T:

        async def once() -> T:
            return parse(*await self._get_once(method, params))

        def count_retry() -> None:
            self.retries += 1

        return await call_with_retries(
            once,
            attempts=self.max_retries + 1,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            max_retry_after=self.max_retry_after,
            sleep=self._sleep,
            rand=self._rand,
            label="backfill: request",
            on_retry=count_retry,
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"streamapp/{__version__} (backfill)"},
                connector=aiohttp.TCPConnector(limit=2),
            )
        return self._session

    async def _get_once(
        self, method: str, params: dict[str, str]
    ) -> tuple[int, bytes, str | None]:
        await self.bucket.acquire()
        self.requests += 1
        url = f"{self.base_url}/{method}"
        shown = f"{self.url}/{method}?{urlencode(params)}"
        try:
            async with self._get_session().get(
                url,
                params=params,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                status = resp.status
                if status == 429 or status >= 500:
                    raise SourceUnavailable(
                        f"{shown} answered HTTP {status}",
                        retry_after=parse_retry_after(
                            resp.headers.get("Retry-After"), now=self._clock()
                        ),
                    )
                if status == 204:
                    return status, b"", None
                body = await self._read_capped(resp, shown)
                if status == 400 and _TOO_MANY.search(
                    body[:2000].decode(errors="replace")
                ):
                    raise TooManyEvents(
                        f"{shown} matches more than {self.max_events} events"
                    )
                if status != 200:
                    detail = body[:200].decode("utf-8", errors="replace").strip()
                    raise SourceResponseError(
                        f"{shown} answered HTTP {status}"
                        + (f": {' '.join(detail.split())}" if detail else "")
                    )
                return status, body, resp.content_type
        except SourceError:
            raise
        except TimeoutError as exc:
            raise SourceUnavailable(
                f"{shown} did not answer within {self.timeout:g}s "
                "(SOURCE_TIMEOUT_SECONDS)"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise SourceError(f"BACKFILL_URL {self.url} is not a valid URL") from exc
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            raise SourceUnavailable(f"cannot connect to {self.url}: {reason}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise SourceUnavailable(f"the body from {shown} was cut off") from exc
        except aiohttp.ClientError as exc:
            raise SourceUnavailable(
                f"cannot fetch {shown}: {type(exc).__name__}"
            ) from exc

    async def _read_capped(self, resp: aiohttp.ClientResponse, shown: str) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            total += len(chunk)
            if total > self.max_bytes:
                resp.close()
                raise SourceResponseError(
                    f"{shown} sent more than {self.max_bytes} bytes; download aborted"
                )
            chunks.append(chunk)
        return b"".join(chunks)
