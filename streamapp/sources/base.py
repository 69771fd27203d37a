"""The source interface, its fetch result, the source factory and the raw envelope."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Protocol,
    TypeGuard,
    TypeVar,
    runtime_checkable,
)
from urllib.parse import parse_qsl, urlencode, urlsplit

from streamapp.backoff import backoff_delay
from streamapp.exceptions import SourceResponseError, SourceUnavailable

if TYPE_CHECKING:
    from streamapp.settings import Settings

__all__ = [
    "FetchResult",
    "Source",
    "build_source",
    "call_with_retries",
    "encode_raw",
    "feature_id",
    "is_json_int",
    "parse_feature_collection",
    "redact_source_url",
    "utcnow",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    backoff_base: float,
    backoff_max: float,
    max_retry_after: float,
    sleep: Callable[[float], Awaitable[object]],
    rand: Callable[[], float],
    label: str,
    on_retry: Callable[[], object],
) -> T:
    """Await ``call()`` until it returns, at most ``attempts`` times in all.

    A :class:`SourceUnavailable` is retried after the server's ``Retry-After``
    (raised at once when that is above ``max_retry_after``) or else the one
    backoff policy with full jitter; each retry is logged at INFO as ``label
    n/attempts failed`` and counted with ``on_retry()``. The last failure is
    raised. The live source and the backfill's event service client share it.

    Example::

        body = await call_with_retries(
            lambda: get_once(url), attempts=5, backoff_base=1.0, backoff_max=30.0,
            max_retry_after=60.0, sleep=asyncio.sleep, rand=random.random,
            label="source attempt", on_retry=lambda: None,
        )
    """
    for attempt in range(attempts):
        try:
            return await call()
        except SourceUnavailable as exc:
            if attempt + 1 >= attempts:
                raise
            if exc.retry_after is not None:
                if exc.retry_after > max_retry_after:
                    raise
                delay, how = exc.retry_after, "as the server asked (Retry-After)"
            else:
                delay = backoff_delay(
                    attempt + 1, backoff_base, backoff_max, jitter=1.0, rand=rand
                )
                how = "backoff"
            log.info(
                "%s %d/%d failed: %s; retrying in %.2fs (%s)",
                label,
                attempt + 1,
                attempts,
                exc,
                delay,
                how,
            )
            on_retry()
            await sleep(delay)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


#: Query parameters whose values are hidden in logs and in the raw envelope.
_SECRET_PARAMS = ("key", "token", "secret", "password", "passwd", "auth", "signature")


@dataclass(frozen=True)
class FetchResult:
    """One successful fetch: the features exactly as received, and where/when from.

    ``features`` holds every element of the document's ``features`` array, whatever
    its type: elements that are not objects are passed on too, so the validator
    dead-letters them with a reason instead of the source dropping them silently.
    """

    features: list[Any]
    source_url: str
    fetched_at: datetime
    size_bytes: int


@runtime_checkable
class Source(Protocol):
    """Something that can be polled for a list of GeoJSON features."""

    @property
    def url(self) -> str:
        """Where the features come from (secrets redacted: safe to log)."""
        ...

    async def fetch(self) -> FetchResult:
        """Fetch the current document.

        Raises :class:`~streamapp.exceptions.SourceUnavailable` when the source
        cannot be reached (worth retrying later; ``retry_after`` may say when) and
        :class:`~streamapp.exceptions.SourceResponseError` when it answered with a
        body that is not a usable FeatureCollection.
        """
        ...

    async def close(self) -> None:
        """Release connections; the source may not be used afterwards."""
        ...


def build_source(settings: Settings) -> Source:
    """The source named by ``settings.source``: ``usgs`` (HTTP) or ``replay`` (file)."""
    # late imports: both source modules import this one
    if settings.source == "usgs":
        from streamapp.sources.usgs import UsgsSource

        return UsgsSource.from_settings(settings)
    if settings.source == "replay":
        from streamapp.sources.replay import ReplaySource

        return ReplaySource.from_settings(settings)
    raise ValueError(f"unknown source {settings.source!r}; use usgs or replay")


def utcnow() -> datetime:
    """The current time, tz-aware UTC (the default clock of the sources)."""
    return datetime.now(UTC)


def redact_source_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_is_secret_param(name) for name, _ in pairs):
            query = urlencode(
                [(n, "***" if _is_secret_param(n) else v) for n, v in pairs], safe="*"
            )
    return parts._replace(netloc=netloc, query=query).geturl()


def _is_secret_param(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_PARAMS)


def parse_feature_collection(
    body: bytes, *, url: str, content_type: str | None = None
) -> list[Any]:
    """The ``features`` list of a GeoJSON FeatureCollection document.

    Raises :class:`SourceResponseError` (naming ``url``) for an empty body, HTML,
    bytes that are not UTF-8, JSON that is malformed or truncated, nesting too deep
    for the parser, a document that is not a FeatureCollection, or ``features``
    that is not a list. NaN and Infinity are accepted as the feed may send them;
    the validator rejects the features that carry them.
    """
    stripped = body.lstrip()
    if not stripped:
        raise SourceResponseError(f"{url} answered with an empty body")
    if (content_type or "").lower() in ("text/html", "application/xhtml+xml") or (
        stripped[:1] == b"<"
    ):
        raise SourceResponseError(
            f"{url} answered with HTML instead of JSON ({len(body)} bytes)"
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceResponseError(
            f"{url} answered with a body that is not UTF-8 (byte {exc.start})"
        ) from exc
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise SourceResponseError(f"{url} answered with JSON nested too deep") from exc
    except ValueError as exc:
        raise SourceResponseError(
            f"{url} answered with malformed or truncated JSON "
            f"({len(body)} bytes): {exc}"
        ) from exc
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        got = (
            f"type {document.get('type')!r}"
            if isinstance(document, dict)
            else f"a JSON {type(document).__name__}"
        )
        raise SourceResponseError(
            f"{url} answered with {got}, not a GeoJSON FeatureCollection"
        )
    features = document.get("features")
    if not isinstance(features, list):
        raise SourceResponseError(
            f"{url} answered with a FeatureCollection whose 'features' is "
            f"{type(features).__name__}, not a list"
        )
    return features


def feature_id(feature: Any) -> str | None:
    """The event id of a feature if it is usable as a Kafka key, else None.

    Usable: a non-empty string that encodes to UTF-8 (a lone surrogate does not).
    """
    if not isinstance(feature, dict):
        return None
    value = feature.get("id")
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def encode_raw(
    feature: Any, fetched_at: datetime, source_url: str
) -> tuple[bytes | None, bytes]:
    """The raw-topic message of one feature: ``(key, value)``.

    Key: the event id as UTF-8, or None when the feature has no usable id (the raw
    topic stays raw; the validator dead-letters such a message). Value: the JSON
    envelope ``{"feature": ..., "fetched_at": "<ISO-8601 UTC>", "source_url": ...}``
    with the feature as received (NaN/Infinity are written as the feed sent them).
    A naive ``fetched_at`` is taken to be UTC.
    """
    if fetched_at.tzinfo is None:
        fetched_at = fetched_at.replace(tzinfo=UTC)
    envelope = {
        "feature": feature,
        "fetched_at": fetched_at.astimezone(UTC).isoformat(),
        "source_url": source_url,
    }
    try:
        value = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (legal as a JSON escape) cannot be UTF-8: keep it escaped.
        data = json.dumps(envelope, ensure_ascii=True, separators=(",", ":")).encode()
    fid = feature_id(feature)
    return (fid.encode("utf-8") if fid is not None else None), data


def is_json_int(value: Any) -> TypeGuard[int]:
    """True for an ``int`` that is not a ``bool`` (a JSON integer)."""
    return isinstance(value, int) and not isinstance(value, bool)
