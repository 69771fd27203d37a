"""A paced producer thread that keeps re-sending until every message is delivered."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from tests.chaos.harness.data import Msg

__all__ = ["BackgroundProducer"]


class BackgroundProducer:
    """Writes messages into a topic from a thread, paced, retrying failed sends.

    A send whose delivery fails (broker gone, timeout) is sent again until it is
    delivered; the raw topic may then hold a copy twice, which reconciliation
    handles (it works from the offsets the broker really holds).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        messages: Sequence[Msg],
        *,
        rate: float | None = None,
        chunk: int = 100,
        producer_options: dict[str, Any] | None = None,
    ) -> None:
        self.kwargs = aiokafka_kwargs(settings)
        self.topic = topic
        self.messages = list(messages)
        self.rate = rate
        self.chunk = chunk
        self.options = {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 10,
            "request_timeout_ms": 20000,
            "retry_backoff_ms": 250,
            **(producer_options or {}),
        }
        self.delivered = 0
        self.failed_sends = 0
        self.last_failure = ""
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._stop = threading.Event()

    def start(self) -> BackgroundProducer:
        """Start sending (from a daemon thread); returns ``self``."""
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop at the next chunk; failed sends are no longer retried."""
        self._stop.set()

    @property
    def done(self) -> bool:
        """True once the thread has finished (every message sent, stopped or failed)."""
        return self.finished_at is not None

    def wait(self, timeout: float) -> None:
        """Join the thread; fail if it is still running or it failed."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(
                f"producer still running after {timeout}s "
                f"({self.delivered}/{len(self.messages)} delivered; "
                f"{self.failed_sends} failed sends, last {self.last_failure!r})"
            )
        if self.error is not None:
            raise AssertionError(f"producer failed: {self.error!r}")

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    async def _start_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        while True:
            producer = AIOKafkaProducer(**self.kwargs, **self.options)
            try:
                await producer.start()
                return producer
            except Exception:
                await producer.stop()
                if self._stop.is_set():
                    raise
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        producer = await self._start_producer()
        try:
            t0 = time.monotonic()
            for start in range(0, len(self.messages), self.chunk):
                if self._stop.is_set():
                    return
                if self.rate:
                    due = t0 + start / self.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await self._send_chunk(
                    producer, self.messages[start : start + self.chunk]
                )
        finally:
            await producer.stop()

    async def _send_chunk(self, producer: Any, chunk: Sequence[Msg]) -> None:
        pending = list(chunk)
        delay = 0.5
        while pending:
            futures: list[Any] = []
            for m in pending:
                try:
                    futures.append(
                        await producer.send(
                            self.topic,
                            m.value,
                            key=m.key,
                            headers=m.headers or None,
                        )
                    )
                except Exception as exc:
                    fut = asyncio.get_running_loop().create_future()
                    fut.set_exception(exc)
                    futures.append(fut)
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [
                m
                for m, r in zip(pending, results, strict=True)
                if isinstance(r, BaseException)
            ]
            self.delivered += len(pending) - len(failed)
            if failed:
                self.failed_sends += len(failed)
                first = next(r for r in results if isinstance(r, BaseException))
                self.last_failure = f"{type(first).__name__}: {first}"
                if self._stop.is_set():
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            pending = failed
