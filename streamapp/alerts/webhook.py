"""Webhook delivery of alerts: an outbox over the ``alerts`` table.

Every worker with ``ALERT_WEBHOOK_URL`` set runs :meth:`WebhookOutbox.run`: it
claims the alerts whose next attempt is due (:mod:`streamapp.alerts.outbox`,
``FOR UPDATE SKIP LOCKED`` plus a lease, so several workers share the table)
and POSTs each as JSON (:func:`alert_payload`) with ``Idempotency-Key: <alert
id>`` and ``Content-Type: application/json``, at most
``ALERT_WEBHOOK_TIMEOUT_SECONDS`` per request. One round makes up to
``ALERT_WEBHOOK_MAX_RETRIES`` attempts with :func:`streamapp.backoff.backoff_delay`
between them (a ``Retry-After`` on 429/503 is honoured; a longer one ends the
round and sets the next). A 2xx marks the alert ``delivered``; otherwise it is
``failing`` with its attempts, the last error (one line, never the URL's
credentials) and the next round ``ALERT_WEBHOOK_RETRY_SECONDS`` later: an alert
is retried until delivered, never dropped. Delivery is at least once (a worker
that dies between the answer and the update re-sends after its lease): the
receiver deduplicates by the idempotency key.

Credentials in the URL (``https://user:password@host/path``) are sent as HTTP
Basic auth, never in the request line, and the URL is logged only through
:func:`streamapp.settings.redact_url`. The sink wakes the loop
(:meth:`WebhookOutbox.wake`) after it stored new alerts, so a fresh alert does
not wait for the next poll.

Example::

    outbox = WebhookOutbox(settings)
    task = asyncio.create_task(outbox.run())   # runs until cancelled
    ...
    outbox.wake()                              # new alerts were committed
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiohttp

from models.alerts import Alert
from streamapp.alerts import outbox as sql_outbox
from streamapp.alerts.metrics import alerts_awaiting, deliveries
from streamapp.backoff import backoff_delay
from streamapp.exceptions import ConfigError, SinkError
from streamapp.faust_ext.records import record_fields
from streamapp.queries import jsonable
from streamapp.settings import Settings, redact_url
from streamapp.stats import stats

__all__ = [
    "BACKOFF_INITIAL_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "CLAIM_LIMIT",
    "MAX_ROUND_WAIT_SECONDS",
    "POLL_SECONDS",
    "Answer",
    "HttpWebhook",
    "RoundResult",
    "Sender",
    "WebhookOutbox",
    "WebhookTarget",
    "alert_payload",
    "deliver_round",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

#: First and largest pause between two attempts of one round (before jitter).
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 10.0
#: The longest ``Retry-After`` waited for within a round; a longer one ends the
#: round and becomes the time of the next.
MAX_ROUND_WAIT_SECONDS = 30.0
#: Alerts claimed (and delivered concurrently) at a time by one worker.
CLAIM_LIMIT = 10
#: The longest the loop sleeps without a wake-up (alerts stored by other workers
#: whose own loop is gone, expired leases).
POLL_SECONDS = 30.0
#: Statuses worth another attempt within the round (besides 5xx).
_RETRYABLE_4XX = frozenset({408, 425, 429})

#: The alert's fields, in the record's order: the payload's keys.
ALERT_FIELDS: tuple[str, ...] = record_fields(Alert)


@dataclass(frozen=True)
class WebhookTarget:
    """Where alerts go: the URL without credentials, Basic auth, the logged form."""

    url: str
    shown: str
    auth: aiohttp.BasicAuth | None = field(default=None, repr=False)
    secret: str = field(default="", repr=False)

    @classmethod
    def parse(cls, raw: str) -> WebhookTarget:
        """Split ``http(s)://[user:password@]host[:port]/path``; ConfigError if it
        is not an http(s) URL with a host (the message never echoes it)."""
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ConfigError(
                "ALERT_WEBHOOK_URL is not a URL; use http(s)://host[:port]/path"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "ALERT_WEBHOOK_URL must be an http or https URL with a host"
            )
        auth = None
        if parts.username is not None or parts.password is not None:
            auth = aiohttp.BasicAuth(
                unquote(parts.username or ""),
                unquote(parts.password or ""),
                encoding="utf-8",
            )
        netloc = parts.netloc.rpartition("@")[2]
        return cls(
            url=parts._replace(netloc=netloc).geturl(),
            shown=redact_url(raw),
            auth=auth,
            secret=parts.password or "",
        )

    def scrub(self, text: str) -> str:
        """``text`` in one line, without the password (raw or decoded)."""
        line = " ".join(text.split())
        for secret in {self.secret, unquote(self.secret)} - {""}:
            line = line.replace(secret, "***")
        return line[:500]


def alert_payload(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of an alert: its fields (``models.alerts.Alert``), times as
    UTC ISO-8601 with ``Z``."""
    return {name: jsonable(alert.get(name)) for name in ALERT_FIELDS}


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date);
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status, or the error that stopped it."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Worth another attempt in this round (network error, 5xx, 408/425/429)."""
        return (
            self.status is None or self.status >= 500 or self.status in _RETRYABLE_4XX
        )


class Sender(Protocol):
    """Sends one alert's body once (:class:`HttpWebhook`, or a fake in tests)."""

    async def send(self, alert_id: str, body: bytes) -> Answer: ...


class HttpWebhook:
    """POSTs alert bodies to a :class:`WebhookTarget` with aiohttp's client."""

    def __init__(
        self, target: WebhookTarget, session: aiohttp.ClientSession, timeout: float
    ) -> None:
        self.target = target
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.timeout_seconds = timeout

    async def send(self, alert_id: str, body: bytes) -> Answer:
        """One POST; never raises for a network error or an HTTP status."""
        url = self.target.url
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": alert_id,
            "User-Agent": "streamapp-alerts",
        }
        try:
            async with self.session.post(
                url,
                data=body,
                headers=headers,
                auth=self.target.auth,
                timeout=self.timeout,
                allow_redirects=False,
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return Answer(resp.status)
                retry_after = (
                    retry_after_seconds(resp.headers.get("Retry-After"))
                    if resp.status in (429, 503)
                    else None
                )
                return Answer(
                    resp.status,
                    f"{url} answered HTTP {resp.status} {resp.reason or ''}".strip(),
                    retry_after,
                )
        except TimeoutError:
            return Answer(
                None,
                f"{url} did not answer within {self.timeout_seconds:g}s "
                "(ALERT_WEBHOOK_TIMEOUT_SECONDS)",
            )
        except aiohttp.ClientError as exc:
            return Answer(
                None,
                self.target.scrub(
                    f"cannot deliver to {url}: {type(exc).__name__}: {exc}"
                ),
            )


@dataclass(frozen=True)
class RoundResult:
    """The outcome of one delivery round of one alert."""

    delivered: bool
    attempts: int
    error: str | None = None
    #: The server asked to wait longer than a round waits (seconds).
    retry_after: float | None = None


async def deliver_round(
    sender: Sender,
    alert_id: str,
    body: bytes,
    *,
    max_attempts: int,
    shown: str = "the webhook",
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    backoff: Callable[[int], float] | None = None,
    scrub: Callable[[str], str] = str,
) -> RoundResult:
    """Up to ``max_attempts`` sends with backoff; stops at the first 2xx, at an
    answer not worth repeating (a 4xx but 408/425/429), or at a ``Retry-After``
    longer than :data:`MAX_ROUND_WAIT_SECONDS`. Errors pass through ``scrub``
    before they are logged or returned."""
    delay_of = backoff or (
        lambda n: backoff_delay(n, BACKOFF_INITIAL_SECONDS, BACKOFF_MAX_SECONDS)
    )
    error: str | None = None
    for attempt in range(1, max_attempts + 1):
        answer = await sender.send(alert_id, body)
        if answer.ok:
            deliveries.labels(outcome="delivered").inc()
            stats.incr("alerts_delivered")
            if attempt > 1:
                log.info(
                    "alert %s delivered to %s on attempt %d", alert_id, shown, attempt
                )
            return RoundResult(True, attempt)
        deliveries.labels(outcome="failed").inc()
        error = scrub(answer.error or f"HTTP {answer.status}")
        if attempt == max_attempts or not answer.retryable:
            break
        delay = delay_of(attempt)
        if answer.retry_after is not None:
            if answer.retry_after > MAX_ROUND_WAIT_SECONDS:
                log.warning(
                    "alert %s: %s, Retry-After %.0fs; next round then",
                    alert_id,
                    error,
                    answer.retry_after,
                )
                deliveries.labels(outcome="gave_up").inc()
                return RoundResult(False, attempt, error, answer.retry_after)
            delay = max(delay, answer.retry_after)
        log.warning(
            "alert %s: %s; attempt %d of %d, retrying in %.1fs",
            alert_id,
            error,
            attempt,
            max_attempts,
            delay,
        )
        await sleep(delay)
    deliveries.labels(outcome="gave_up").inc()
    return RoundResult(False, attempt, error)


class WebhookOutbox:
    """The delivery loop of one worker over the ``alerts`` table (see the module)."""

    def __init__(
        self,
        settings: Settings,
        *,
        sender: Sender | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        claim_limit: int = CLAIM_LIMIT,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.settings = settings
        self.target = WebhookTarget.parse(settings.alert_webhook_url.get_secret_value())
        self.sender = sender
        self.sleep = sleep
        self.claim_limit = claim_limit
        self.poll_seconds = poll_seconds
        self.max_attempts = settings.alert_webhook_max_retries
        self.retry_seconds = settings.alert_webhook_retry_seconds
        timeout = settings.alert_webhook_timeout_seconds
        #: Longest a round can take: a crashed worker's claim expires after it.
        self.lease_seconds = (
            self.max_attempts * (timeout + MAX_ROUND_WAIT_SECONDS) + 60.0
        )
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due alerts now (called after new alerts were committed)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver due alerts until cancelled (a database outage is waited out)."""
        log.info("alert webhook: delivering alerts to %s", self.target.shown)
        if self.sender is not None:
            await self._loop()
            return
        async with aiohttp.ClientSession() as session:
            self.sender = HttpWebhook(
                self.target, session, self.settings.alert_webhook_timeout_seconds
            )
            try:
                await self._loop()
            finally:
                self.sender = None

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                claimed = await self.deliver_due()
                if claimed >= self.claim_limit:
                    continue
                count, due_in = await asyncio.to_thread(
                    sql_outbox.outbox_state, self.settings
                )
                alerts_awaiting.set(count)
                wait = self.poll_seconds if due_in is None else due_in
                wait = min(max(wait, 0.05), self.poll_seconds)
                failures = 0
            except SinkError as exc:
                failures += 1
                wait = backoff_delay(failures, 1.0, self.poll_seconds)
                log.warning("alert webhook: %s; looking again in %.1fs", exc, wait)
            except Exception:  # a bug must not end delivery for the worker's life
                failures += 1
                wait = backoff_delay(failures, 1.0, self.poll_seconds)
                log.exception("alert webhook: unexpected error; looking again soon")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def deliver_due(self) -> int:
        """Claim the due alerts and run one round for each (concurrently); returns
        how many were claimed."""
        self._wake.clear()
        claimed = await asyncio.to_thread(
            sql_outbox.claim_due,
            self.settings,
            limit=self.claim_limit,
            lease_seconds=self.lease_seconds,
        )
        if claimed:
            await asyncio.gather(*(self._deliver(alert) for alert in claimed))
        return len(claimed)

    async def _deliver(self, alert: Mapping[str, Any]) -> None:
        assert self.sender is not None
        alert_id = str(alert["id"])
        body = json.dumps(alert_payload(alert), separators=(",", ":")).encode()
        result = await deliver_round(
            self.sender,
            alert_id,
            body,
            max_attempts=self.max_attempts,
            shown=self.target.shown,
            sleep=self.sleep,
            scrub=self.target.scrub,
        )
        try:
            if result.delivered:
                await asyncio.to_thread(
                    sql_outbox.record_delivered,
                    self.settings,
                    alert_id,
                    attempts=result.attempts,
                )
                return
            retry_in = max(self.retry_seconds, result.retry_after or 0.0)
            error = self.target.scrub(result.error or "not delivered")
            await asyncio.to_thread(
                sql_outbox.record_failed,
                self.settings,
                alert_id,
                attempts=result.attempts,
                error=error,
                retry_in=retry_in,
            )
            log.warning(
                "alert %s not delivered after %d attempt(s): %s; next round in %.0fs",
                alert_id,
                result.attempts,
                error,
                retry_in,
            )
        except SinkError as exc:
            # The lease runs out and the alert is due again: sent at least once.
            log.warning(
                "alert %s: recording the delivery outcome failed: %s", alert_id, exc
            )
