"""streamapp.alerts.webhook with a fake clock and a fake HTTP sender (no network)."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from models.alerts import event_alerts
from streamapp.alerts import outbox as sql_outbox
from streamapp.alerts.webhook import (
    MAX_ROUND_WAIT_SECONDS,
    Answer,
    WebhookOutbox,
    WebhookTarget,
    alert_payload,
    deliver_round,
    retry_after_seconds,
)
from streamapp.exceptions import ConfigError, TransientSinkError
from streamapp.metrics import REGISTRY
from streamapp.settings import Secret, Settings, load_settings

T0 = datetime(2026, 12, 8, 3, 12, tzinfo=UTC)


class FakeSender:
    """Answers each send with the next scripted Answer (then 200); records them."""

    def __init__(self, answers: Sequence[Answer] = ()) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, alert_id: str, body: bytes) -> Answer:
        self.sent.append((alert_id, body))
        return self.answers.pop(0) if self.answers else Answer(200)


class FakeClock:
    """``sleep`` that only records the pauses."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


def count(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "streamapp_alert_deliveries_total", {"outcome": outcome}
    )
    return value or 0.0


# --------------------------------------------------------------------- the target
def test_credentials_become_basic_auth_and_never_show() -> None:
    target = WebhookTarget.parse("https://alice:p%40ss%3Aword@hooks.example.com/x?a=1")
    assert target.url == "https://hooks.example.com/x?a=1"
    assert target.auth is not None
    assert (target.auth.login, target.auth.password) == ("alice", "p@ss:word")
    assert target.shown == "https://alice:***@hooks.example.com/x?a=1"
    assert "p%40ss" not in repr(target) and "p@ss" not in repr(target)
    assert target.scrub("failed:\n p%40ss%3Aword and p@ss:word") == (
        "failed: *** and ***"
    )


def test_a_url_without_credentials_has_no_auth() -> None:
    target = WebhookTarget.parse("http://127.0.0.1:8080/hook")
    assert target.auth is None and target.shown == target.url


@pytest.mark.parametrize(
    "raw", ["ftp://host/x", "http://", "hooks.example.com", "http://h:99999/"]
)
def test_a_bad_url_is_a_config_error_without_the_value(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        WebhookTarget.parse(raw.replace("//", "//u:topsecret@", 1))
    assert "topsecret" not in str(info.value)
    assert "ALERT_WEBHOOK_URL" in str(info.value)


# -------------------------------------------------------------------- the payload
def test_the_payload_is_the_alerts_fields_as_json() -> None:
    quake = {
        "id": "us1",
        "magnitude": 6.4,
        "latitude": 35.7,
        "longitude": 139.7,
        "time": T0,
        "tsunami": True,
    }
    alert = event_alerts(quake, min_magnitude=6.0, now=T0)[0]
    payload = alert_payload({**alert.asdict(), "attempts": 3, "stored_at": T0})
    assert list(payload) == [
        "id",
        "rule",
        "subject",
        "region",
        "occurred_at",
        "detected_at",
        "summary",
        "event_id",
        "magnitude",
        "place",
        "url",
        "tsunami",
        "pager",
        "hour_count",
        "trailing_mean",
        "factor",
    ]
    assert payload["id"] == "magnitude:us1" and payload["region"] == "30N130E"
    assert payload["occurred_at"] == "2026-12-08T03:12:00Z"
    assert payload["tsunami"] is True and payload["hour_count"] is None
    json.dumps(payload)  # JSON-ready as it is


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert 88 <= (retry_after_seconds(date, now=now) or 0) <= 91
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert retry_after_seconds(past, now=now) == 0.0


# ----------------------------------------------------------------------- a round
async def test_a_round_retries_with_the_backoff_schedule_until_a_2xx() -> None:
    sender = FakeSender([Answer(500, "HTTP 500"), Answer(None, "refused")])
    clock = FakeClock()
    before = (count("delivered"), count("failed"), count("gave_up"))
    result = await deliver_round(
        sender,
        "magnitude:us1",
        b"{}",
        max_attempts=4,
        sleep=clock.sleep,
        backoff=lambda n: 10.0 * n,
    )
    assert result.delivered and result.attempts == 3 and result.error is None
    assert clock.pauses == [10.0, 20.0]
    assert [s[0] for s in sender.sent] == ["magnitude:us1"] * 3
    after = (count("delivered"), count("failed"), count("gave_up"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 2, 0]


async def test_the_default_backoff_doubles_with_jitter() -> None:
    clock = FakeClock()
    result = await deliver_round(
        FakeSender([Answer(500, "e")] * 4),
        "a:b",
        b"{}",
        max_attempts=4,
        sleep=clock.sleep,
    )
    assert not result.delivered and result.attempts == 4 and result.error == "e"
    assert len(clock.pauses) == 3  # none after the last attempt
    for n, pause in enumerate(clock.pauses):
        assert 0.25 * 2**n <= pause <= 0.5 * 2**n


async def test_a_client_error_ends_the_round_but_408_429_retry() -> None:
    clock = FakeClock()
    gave_up = count("gave_up")
    result = await deliver_round(
        FakeSender([Answer(404, "HTTP 404 Not Found")]),
        "a:b",
        b"{}",
        max_attempts=4,
        sleep=clock.sleep,
    )
    assert (result.delivered, result.attempts, result.error) == (
        False,
        1,
        "HTTP 404 Not Found",
    )
    assert count("gave_up") == gave_up + 1
    result = await deliver_round(
        FakeSender([Answer(408, "x"), Answer(429, "y")]),
        "a:b",
        b"{}",
        max_attempts=4,
        sleep=clock.sleep,
        backoff=lambda n: 0.0,
    )
    assert result.delivered and result.attempts == 3


async def test_retry_after_is_honoured_or_ends_the_round() -> None:
    clock = FakeClock()
    result = await deliver_round(
        FakeSender([Answer(503, "busy", retry_after=7.0)]),
        "a:b",
        b"{}",
        max_attempts=4,
        sleep=clock.sleep,
        backoff=lambda n: 1.0,
    )
    assert result.delivered and clock.pauses == [7.0]
    long = MAX_ROUND_WAIT_SECONDS + 60
    result = await deliver_round(
        FakeSender([Answer(429, "slow down", retry_after=long)]),
        "a:b",
        b"{}",
        max_attempts=4,
        sleep=clock.sleep,
    )
    assert not result.delivered and result.attempts == 1
    assert result.retry_after == long and clock.pauses == [7.0]


# ---------------------------------------------------------------------- the loop
@pytest.fixture
def hook_settings() -> Settings:
    return dataclasses.replace(
        load_settings(environ={}, env_file=None),
        alert_webhook_url=Secret("https://bot:hunter2secret@hooks.example.com/a"),
        alert_webhook_max_retries=2,
        alert_webhook_retry_seconds=60.0,
    )


class FakeTable:
    """The outbox SQL in memory: due alerts, and the outcomes recorded."""

    def __init__(self) -> None:
        self.due: list[dict[str, Any]] = []
        self.delivered: list[tuple[str, int]] = []
        self.failed: list[tuple[str, int, str, float]] = []
        self.claims = 0
        self.down = False
        self.boom = False

    def claim_due(self, settings: Settings, **kw: Any) -> list[dict[str, Any]]:
        self.claims += 1
        if self.down:
            raise TransientSinkError("claiming alerts failed: connection refused")
        if self.boom:
            self.boom = False
            raise RuntimeError("a bug")
        out, self.due = self.due, []
        return out

    def outbox_state(self, settings: Settings) -> tuple[int, float | None]:
        return 0, None

    def record_delivered(self, settings: Settings, alert_id: str, **kw: Any) -> None:
        self.delivered.append((alert_id, kw["attempts"]))

    def record_failed(self, settings: Settings, alert_id: str, **kw: Any) -> None:
        self.failed.append((alert_id, kw["attempts"], kw["error"], kw["retry_in"]))


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> FakeTable:
    fake = FakeTable()
    for name in ("claim_due", "outbox_state", "record_delivered", "record_failed"):
        monkeypatch.setattr(sql_outbox, name, getattr(fake, name))
    return fake


async def until(check: Callable[[], bool], within: float = 2.0) -> None:
    """Return once ``check()`` holds; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


def row(alert_id: str) -> dict[str, Any]:
    rule, _, subject = alert_id.partition(":")
    return {"id": alert_id, "rule": rule, "subject": subject, "detected_at": T0}


async def test_a_wake_delivers_a_fresh_alert_without_waiting_for_the_poll(
    hook_settings: Settings, table: FakeTable
) -> None:
    sender = FakeSender()
    outbox = WebhookOutbox(hook_settings, sender=sender, poll_seconds=600)
    task = asyncio.create_task(outbox.run())
    try:
        await until(lambda: table.claims >= 1)
        table.due.append(row("magnitude:us9"))
        outbox.wake()
        await until(lambda: bool(table.delivered))
        assert table.delivered == [("magnitude:us9", 1)]
        assert json.loads(sender.sent[0][1])["id"] == "magnitude:us9"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_round_is_recorded_scrubbed_for_the_next_round(
    hook_settings: Settings, table: FakeTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamapp.alerts")
    sender = FakeSender(
        [Answer(None, "cannot deliver: bot:hunter2secret rejected")] * 2
    )
    outbox = WebhookOutbox(hook_settings, sender=sender, sleep=FakeClock().sleep)
    table.due.append(row("tsunami:us2"))
    task = asyncio.create_task(outbox.run())
    try:
        await until(lambda: bool(table.failed))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert table.failed == [
        ("tsunami:us2", 2, "cannot deliver: bot:*** rejected", 60.0)
    ]
    assert "hunter2secret" not in caplog.text
    assert "https://bot:***@hooks.example.com/a" in caplog.text


async def test_the_loop_waits_out_a_database_outage(
    hook_settings: Settings, table: FakeTable, caplog: pytest.LogCaptureFixture
) -> None:
    table.down = True
    outbox = WebhookOutbox(hook_settings, sender=FakeSender(), poll_seconds=0.05)
    task = asyncio.create_task(outbox.run())
    try:
        await until(lambda: table.claims >= 3, 5.0)
        assert not task.done()
        table.down = False
        table.boom = True  # then an unexpected error: logged, the loop goes on
        table.due.append(row("pager:us3"))
        await until(lambda: bool(table.delivered), 5.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "connection refused; looking again" in caplog.text
    assert "unexpected error" in caplog.text and "RuntimeError: a bug" in caplog.text
