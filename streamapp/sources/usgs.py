"""The ``usgs`` source: the USGS GeoJSON feed over HTTP with timeouts, retries, caps."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import aiohttp

from streamapp import __version__
from streamapp.exceptions import SourceError, SourceResponseError, SourceUnavailable
from streamapp.sources.base import (
    FetchResult,
    call_with_retries,
    parse_feature_collection,
    redact_source_url,
    utcnow,
)
from streamapp.stats import stats

if TYPE_CHECKING:
    from streamapp.settings import Settings

__all__ = ["UsgsSource", "parse_retry_after"]

log = logging.getLogger(__name__)

#: Bytes read from the socket at a time while the body is checked against the cap.
CHUNK_BYTES = 64 * 1024
_SECONDS = re.compile(r"^\d{1,10}(\.\d+)?$")


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date).

    None when the header is missing or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _SECONDS.match(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class UsgsSource:
    """Polls a GeoJSON FeatureCollection URL (the USGS summary feeds by default).

    One :class:`aiohttp.ClientSession` is created on first use (inside the running
    loop) and reused by every fetch. A fetch makes up to ``1 + max_retries``
    attempts: connection errors, timeouts, HTTP 5xx and 429 are retried after an
    exponential backoff with full jitter, or after the server's ``Retry-After``
    when it sends one (up to ``max_retry_after`` seconds; a longer wait is raised
    as :class:`SourceUnavailable` with ``retry_after`` so the caller skips polls
    until then instead of holding the timer). A body that is not a usable
    FeatureCollection, is larger than ``max_bytes`` (the stream is aborted; the
    ``Content-Length`` is checked first but not trusted), or any other HTTP status
    raises :class:`SourceResponseError` at once: the next poll tries again.

    aiohttp errors are translated here, once, into the streamapp exceptions; their
    messages name the URL with secrets (password, token-like query values) masked.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 20.0,
        max_bytes: int = 20 * 1024 * 1024,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 60.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = utcnow,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._raw_url = url
        self._url = redact_source_url(url)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_settings(cls, settings: Settings) -> UsgsSource:
        """A source for ``SOURCE_URL`` with the timeout, cap and retries configured.

        A ``Retry-After`` is waited out within the poll if it is shorter than the
        fetch interval; a longer one defers the next polls instead.
        """
        return cls(
            settings.source_url,
            timeout=settings.source_timeout_seconds,
            max_bytes=settings.source_max_bytes,
            max_retries=settings.source_max_retries,
            backoff_max=max(1.0, min(30.0, settings.fetch_interval_seconds / 2)),
            max_retry_after=settings.fetch_interval_seconds,
        )

    @property
    def url(self) -> str:
        """The feed URL with secrets masked (safe to log and to put in messages)."""
        return self._url

    @property
    def attempts(self) -> int:
        """How many requests one fetch makes at most."""
        return self.max_retries + 1

    async def fetch(self) -> FetchResult:
        """Fetch and parse the feed; see the class docstring for the failure modes."""
        # Retries log at INFO: the caller logs the failed poll as one WARNING line.
        return await call_with_retries(
            self._fetch_once,
            attempts=self.attempts,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            max_retry_after=self.max_retry_after,
            sleep=self._sleep,
            rand=self._rand,
            label="source attempt",
            on_retry=lambda: stats.incr("fetch_retries"),
        )

    async def close(self) -> None:
        """Close the HTTP session (if this source created it)."""
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    # ------------------------------------------------------------------ internals
    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={
                    "User-Agent": f"streamapp/{__version__}",
                    "Accept": "application/geo+json, application/json;q=0.9",
                },
                connector=aiohttp.TCPConnector(limit=4),
            )
            self._owns_session = True
        return self._session

    async def _fetch_once(self) -> FetchResult:
        url = self._url
        session = self._get_session()
        try:
            async with session.get(
                self._raw_url,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=True,
            ) as resp:
                status = resp.status
                if status == 429 or status >= 500:
                    retry_after = parse_retry_after(
                        resp.headers.get("Retry-After"), now=self._clock()
                    )
                    raise SourceUnavailable(
                        f"{url} answered HTTP {status} {resp.reason or ''}".rstrip(),
                        retry_after=retry_after,
                    )
                if status != 200:
                    raise SourceResponseError(
                        f"{url} answered HTTP {status} {resp.reason or ''}".rstrip()
                    )
                length = resp.content_length
                if length is not None and length > self.max_bytes:
                    resp.close()
                    raise SourceResponseError(
                        f"{url} announced {length} bytes, more than the cap of "
                        f"{self.max_bytes} (SOURCE_MAX_BYTES); not downloaded"
                    )
                body = await self._read_capped(resp)
                content_type = resp.content_type
        except SourceError:
            raise
        except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
            raise SourceUnavailable(
                f"{url} did not answer within {self.timeout:g}s "
                "(SOURCE_TIMEOUT_SECONDS)"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise SourceError(f"SOURCE_URL {url} is not a valid URL") from exc
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            raise SourceUnavailable(f"cannot connect to {url}: {reason}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise SourceUnavailable(
                f"the body from {url} was cut off: {self._scrub(str(exc))}"
            ) from exc
        except aiohttp.ClientResponseError as exc:
            raise SourceResponseError(
                f"{url} sent an unusable HTTP response: {exc.status} "
                f"{self._scrub(exc.message)}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise SourceUnavailable(
                f"cannot fetch {url}: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from exc
        fetched_at = self._clock()
        features = parse_feature_collection(body, url=url, content_type=content_type)
        return FetchResult(
            features=features,
            source_url=url,
            fetched_at=fetched_at,
            size_bytes=len(body),
        )

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """The (decompressed) body, aborting the download past ``max_bytes``."""
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            total += len(chunk)
            if total > self.max_bytes:
                resp.close()  # drop the connection: do not read the rest
                raise SourceResponseError(
                    f"{self._url} sent more than the cap of {self.max_bytes} bytes "
                    "(SOURCE_MAX_BYTES); download aborted"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _scrub(self, text: str) -> str:
        """``text`` without the unredacted URL (aiohttp messages may quote it)."""
        if self._raw_url != self._url:
            text = text.replace(self._raw_url, self._url)
        return text
