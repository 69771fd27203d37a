"""The usgs source against a local HTTP server: good feed, faults, backoff, caps."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streamapp.exceptions import SourceError, SourceResponseError, SourceUnavailable
from streamapp.sources.usgs import UsgsSource, parse_retry_after
from tests.unit.streamapp.sources.source_testkit import (
    FEED_2024,
    NOW,
    FeedServer,
    Sleeps,
    fixed_clock,
)

GOOD = FEED_2024.read_bytes()


def source_for(url: str, sleeps: Sleeps, **kwargs: Any) -> UsgsSource:
    options: dict[str, Any] = {
        "timeout": 5.0,
        "max_bytes": 1024 * 1024,
        "max_retries": 3,
        "sleep": sleeps,
        "rand": lambda: 0.5,
        "clock": fixed_clock,
    }
    options.update(kwargs)
    return UsgsSource(url, **options)


async def good(_: web.Request) -> web.Response:
    return web.Response(body=GOOD, content_type="application/json")


def status(code: int, headers: dict[str, str] | None = None) -> Any:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=code, text="busy", headers=headers or {})

    return handler


def body(data: bytes, content_type: str = "application/json") -> Any:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=data, content_type=content_type)

    return handler


async def test_good_feed(feed_server: FeedServer, sleeps: Sleeps) -> None:
    feed_server.script(good)
    source = source_for(feed_server.url(), sleeps)
    try:
        result = await source.fetch()
    finally:
        await source.close()
    assert result.features == json.loads(GOOD)["features"]
    assert len(result.features) == 8
    assert result.source_url == feed_server.url()
    assert result.fetched_at == NOW
    assert result.size_bytes == len(GOOD)
    assert sleeps.calls == []


async def test_one_session_is_reused_and_closed(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    feed_server.script(good)
    source = source_for(feed_server.url(), sleeps)
    await source.fetch()
    session = source._session  # noqa: SLF001 - the reuse is what is tested
    await source.fetch()
    assert source._session is session  # noqa: SLF001
    assert feed_server.requests == 2
    await source.close()
    assert session is not None and session.closed


async def test_500_then_good_backs_off(feed_server: FeedServer, sleeps: Sleeps) -> None:
    feed_server.script(status(500), status(502), good)
    source = source_for(feed_server.url(), sleeps, backoff_base=1.0, backoff_max=30.0)
    try:
        result = await source.fetch()
    finally:
        await source.close()
    assert len(result.features) == 8
    assert feed_server.requests == 3
    # full jitter with rand() = 0.5: 0.5 * 1 * 2**0, then 0.5 * 1 * 2**1
    assert sleeps.calls == [0.5, 1.0]


async def test_5xx_every_time_gives_up_after_the_attempts(
    feed_server: FeedServer, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    feed_server.script(status(503))
    source = source_for(feed_server.url(), sleeps, max_retries=3)
    with caplog.at_level(logging.INFO), pytest.raises(SourceUnavailable) as info:
        await source.fetch()
    await source.close()
    assert feed_server.requests == 4
    assert len(sleeps.calls) == 3
    assert "HTTP 503" in str(info.value)
    assert feed_server.url() in str(info.value)
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert [r.getMessage().split(" failed")[0] for r in retries] == [
        "source attempt 1/4",
        "source attempt 2/4",
        "source attempt 3/4",
    ]


async def test_429_retry_after_seconds_is_honoured(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    feed_server.script(status(429, {"Retry-After": "7"}), good)
    source = source_for(feed_server.url(), sleeps, max_retry_after=60.0)
    try:
        result = await source.fetch()
    finally:
        await source.close()
    assert len(result.features) == 8
    assert sleeps.calls == [7.0]


async def test_429_retry_after_http_date_is_honoured(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    feed_server.script(status(429, {"Retry-After": when}), good)
    source = source_for(feed_server.url(), sleeps)
    try:
        await source.fetch()
    finally:
        await source.close()
    assert sleeps.calls == [30.0]


async def test_429_longer_than_allowed_is_raised_with_retry_after(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    feed_server.script(status(429, {"Retry-After": "600"}), good)
    source = source_for(feed_server.url(), sleeps, max_retry_after=60.0)
    with pytest.raises(SourceUnavailable) as info:
        await source.fetch()
    await source.close()
    assert info.value.retry_after == 600.0
    assert sleeps.calls == []
    assert feed_server.requests == 1


async def test_timeout(feed_server: FeedServer, sleeps: Sleeps) -> None:
    never = asyncio.Event()

    async def hang(_: web.Request) -> web.Response:
        await never.wait()
        return web.Response(body=GOOD)

    feed_server.script(hang)
    source = source_for(feed_server.url(), sleeps, timeout=0.2, max_retries=1)
    with pytest.raises(SourceUnavailable) as info:
        await source.fetch()
    await source.close()
    assert "did not answer within 0.2s" in str(info.value)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert feed_server.requests == 2
    assert sleeps.calls == [0.5]


async def test_connection_refused(refused_url: str, sleeps: Sleeps) -> None:
    source = source_for(refused_url, sleeps, max_retries=2)
    with pytest.raises(SourceUnavailable) as info:
        await source.fetch()
    await source.close()
    assert str(info.value).startswith(f"cannot connect to {refused_url}")
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    assert sleeps.calls == [0.5, 1.0]


async def test_secrets_never_in_messages_or_logs(
    refused_url: str, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    url = refused_url.replace("http://", "http://user:hunter2@") + "?api_token=s3cr3t"
    source = source_for(url, sleeps, max_retries=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceUnavailable) as info:
        await source.fetch()
    await source.close()
    text = str(info.value) + caplog.text + source.url
    assert "hunter2" not in text and "s3cr3t" not in text
    assert "user:***@" in str(info.value)


async def test_truncated_json(feed_server: FeedServer, sleeps: Sleeps) -> None:
    feed_server.script(body(GOOD[: len(GOOD) // 2]))
    source = source_for(feed_server.url(), sleeps)
    with pytest.raises(SourceResponseError, match="malformed or truncated JSON"):
        await source.fetch()
    await source.close()
    assert feed_server.requests == 1  # a bad body is not retried within the poll
    assert sleeps.calls == []


async def test_body_cut_off_by_the_server_is_unavailable(sleeps: Sleeps) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n" + GOOD[:100]
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = source_for(f"http://127.0.0.1:{port}/feed", sleeps, max_retries=0)
    try:
        with pytest.raises(SourceUnavailable, match="cut off"):
            await source.fetch()
    finally:
        await source.close()
        server.close()
        await server.wait_closed()


async def test_html_body(feed_server: FeedServer, sleeps: Sleeps) -> None:
    page = b"<!DOCTYPE html><html><body>Service Unavailable</body></html>"
    feed_server.script(body(page, "text/html"))
    source = source_for(feed_server.url(), sleeps)
    with pytest.raises(SourceResponseError, match="HTML instead of JSON"):
        await source.fetch()
    await source.close()


async def test_html_body_labelled_as_json(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    feed_server.script(body(b"  <html>oops</html>"))
    source = source_for(feed_server.url(), sleeps)
    with pytest.raises(SourceResponseError, match="HTML"):
        await source.fetch()
    await source.close()


async def test_body_over_the_cap_is_aborted(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    chunk = b" " * 65536
    total_chunks = 200  # 12.5 MiB if it were all read
    written: list[int] = []

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        count = 0
        try:
            for _ in range(total_chunks):
                await resp.write(chunk)
                count += 1
                await asyncio.sleep(0.001)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            written.append(count)
        return resp

    feed_server.script(huge)
    source = source_for(feed_server.url(), sleeps, max_bytes=256 * 1024)
    with pytest.raises(SourceResponseError, match="download aborted"):
        await source.fetch()
    await source.close()
    for _ in range(200):
        if written:
            break
        await asyncio.sleep(0.01)
    assert written and written[0] < total_chunks
    assert feed_server.requests == 1


async def test_content_length_over_the_cap_is_not_downloaded(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    feed_server.script(body(b"[" + b" " * 5000 + b"]"))
    source = source_for(feed_server.url(), sleeps, max_bytes=1024)
    with pytest.raises(SourceResponseError, match="announced 5002 bytes"):
        await source.fetch()
    await source.close()


async def test_compressed_body_is_capped_after_decompression(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    bomb = gzip.compress(b'{"type":"FeatureCollection","features":[' + b" " * 2_000_000)

    async def handler(_: web.Request) -> web.Response:
        return web.Response(
            body=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    feed_server.script(handler)
    source = source_for(feed_server.url(), sleeps, max_bytes=64 * 1024)
    assert len(bomb) < 64 * 1024  # the Content-Length alone would let it through
    with pytest.raises(SourceResponseError, match="download aborted"):
        await source.fetch()
    await source.close()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b'{"type": "Feature", "properties": {}}', "type 'Feature'"),
        (b"[1, 2, 3]", "a JSON list"),
        (b'{"type": "FeatureCollection", "features": {}}', "not a list"),
        (b'{"type": "FeatureCollection"}', "NoneType, not a list"),
        (b"", "empty body"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ],
)
async def test_not_a_feature_collection(
    feed_server: FeedServer, sleeps: Sleeps, document: bytes, message: str
) -> None:
    feed_server.script(body(document))
    source = source_for(feed_server.url(), sleeps)
    with pytest.raises(SourceResponseError, match=message):
        await source.fetch()
    await source.close()


async def test_features_that_are_not_objects_are_passed_on(
    feed_server: FeedServer, sleeps: Sleeps
) -> None:
    document = {
        "type": "FeatureCollection",
        "features": [1, "x", None, [], {"id": "a"}],
    }
    feed_server.script(body(json.dumps(document).encode()))
    source = source_for(feed_server.url(), sleeps)
    result = await source.fetch()
    await source.close()
    assert result.features == [1, "x", None, [], {"id": "a"}]


async def test_404_is_not_retried(feed_server: FeedServer, sleeps: Sleeps) -> None:
    feed_server.script(status(404))
    source = source_for(feed_server.url(), sleeps)
    with pytest.raises(SourceResponseError, match="HTTP 404"):
        await source.fetch()
    await source.close()
    assert feed_server.requests == 1


async def test_invalid_url_is_a_source_error(sleeps: Sleeps) -> None:
    source = source_for("not a url", sleeps)
    with pytest.raises(SourceError):
        await source.fetch()
    await source.close()


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, now=NOW) is None
    assert parse_retry_after("", now=NOW) is None
    assert parse_retry_after("120", now=NOW) == 120.0
    assert parse_retry_after(" 1.5 ", now=NOW) == 1.5
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after("nan", now=NOW) is None
    assert parse_retry_after("-5", now=NOW) is None
    later = format_datetime(NOW + timedelta(minutes=2), usegmt=True)
    assert parse_retry_after(later, now=NOW) == 120.0
    earlier = format_datetime(NOW - timedelta(minutes=2), usegmt=True)
    assert parse_retry_after(earlier, now=NOW) == 0.0
