"""Schema-driven fuzzing of a real worker's API against its own OpenAPI document.

One worker (its own app id, topics and PostgreSQL schema; the bundled capture
replayed, so the tables have rows, plus a few dead letters) serves
``/api/openapi.json``; schemathesis loads that document and calls every
operation with generated valid and invalid inputs. Each response must not be a
server error, must have a documented status code, content type and headers,
and must match the documented body schema.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from psycopg2 import sql
from psycopg2.extras import Json
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streamapp.db import get_engine, migrate
from streamapp.openapi import openapi_document
from streamapp.settings import Settings, load_settings
from tests.support.kafka import KafkaAdmin
from tests.support.ports import free_port
from tests.support.stack import stack_problems
from tests.support.workers import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TOKEN = uuid.uuid4().hex
TOPICS = (
    "TOPIC_RAW",
    "TOPIC_CLEAN",
    "TOPIC_DEAD_LETTER",
    "TOPIC_ACTIVITY",
    "TOPIC_ALERTS",
)
#: Generated requests per operation and generation mode (valid / invalid input).
MAX_EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
DEAD_LETTERS = [
    ("not_json", b"{not json"),
    ("not_utf8", b"\xff\xfe not utf-8"),
    ("schema", b'{"feature": {"id": "bad", "properties": {}}}'),
]


def _env(tag: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "APP_ID": f"oas-{tag}",
            "TOPIC_RAW": f"oas-{tag}.raw",
            "TOPIC_CLEAN": f"oas-{tag}.clean",
            "TOPIC_DEAD_LETTER": f"oas-{tag}.dead-letter",
            "TOPIC_ACTIVITY": f"oas-{tag}.activity",
            "TOPIC_ALERTS": f"oas-{tag}.alerts",
            "POSTGRES_SCHEMA": f"oas_{tag}",
            "WEB_PORT": str(free_port()),
            "SOURCE": "replay",
            "FETCH_INTERVAL_SECONDS": "5",
            "SINK_BATCH_SECONDS": "0.2",
            "REDRIVE_TOKEN": TOKEN,
            # Alerts from the capture's larger events, so /api/alerts has rows.
            "ALERT_MIN_MAGNITUDE": "4.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _seed_dead_letters(settings: Settings) -> None:
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    table = sql.Identifier(settings.postgres_schema, "dead_letters")
    try:
        with conn, conn.cursor() as cur:
            for i, (kind, payload) in enumerate(DEAD_LETTERS):
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (source_topic, source_partition,"
                        " source_offset, key, payload, error_kind, error_message,"
                        " error_detail, failed_at) VALUES"
                        " (%s, 0, %s, %s, %s, %s, %s, %s, %s)"
                    ).format(table),
                    (
                        settings.topic_raw,
                        i,
                        b"key-%d" % i,
                        payload,
                        kind,
                        f"seeded {kind}",
                        Json({"seeded": i}),
                        datetime.now(UTC) - timedelta(minutes=i),
                    ),
                )
    finally:
        conn.close()


def _rows(settings: Settings, table: str) -> int:
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(settings.postgres_schema, table)
                )
            )
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for every generated request, with rows in its tables."""
    env = _env(uuid.uuid4().hex[:8])
    stack = load_settings(env, env_file=None)
    problems = stack_problems(stack)
    if problems:
        pytest.fail(f"the local stack is not answering: {problems}", pytrace=False)
    admin = KafkaAdmin(stack.kafka_bootstrap_servers, stack)
    for key in TOPICS:
        admin.create_topic(env[key], partitions=stack.topic_partitions)
    migrate(stack)
    _seed_dead_letters(stack)
    log = tmp_path_factory.mktemp("openapi") / "worker.log"
    running = Worker(env, Path(log)).start()
    try:
        running.wait_healthy()
        wait_for_rows(running, stack)
        yield running
    finally:
        running.stop()
        admin.cleanup()
        engine = get_engine(stack)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f'DROP SCHEMA IF EXISTS "{stack.postgres_schema}" CASCADE'
            )
        engine.dispose()


def wait_for_rows(worker: Worker, stack: Settings, patience: float = 90) -> None:
    """Wait until the replayed capture has rows in the earthquakes table."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        worker.assert_alive()
        if _rows(stack, "earthquakes") > 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"no earthquakes stored in {patience}s:\n{worker.tail()}")


@pytest.fixture(scope="module")
def api_schema(worker: Worker) -> Any:
    """The document the worker serves, aimed at the worker."""
    base = f"http://127.0.0.1:{worker.web_port}"
    return schemathesis.openapi.from_url(f"{base}/api/openapi.json")


def _call(api_schema: Any, worker: Worker, method: str, path: str, **case: Any) -> Any:
    """One chosen request, checked like the generated ones; its response."""
    headers = case.pop("headers", None)
    operation = api_schema[path][method]
    response = operation.Case(**case).call_and_validate(
        base_url=f"http://127.0.0.1:{worker.web_port}",
        checks=CHECKS,
        headers=headers,
        timeout=30,
        allow_redirects=False,
    )
    return response


def test_chosen_requests_keep_to_the_document(api_schema: Any, worker: Worker) -> None:
    """The statuses random input rarely reaches, and the fuzzer's past findings.

    Runs before the fuzzing (which may redrive the seeded dead letters)."""
    page = _call(api_schema, worker, "get", "/api/earthquakes", query={"limit": 2})
    assert page.status_code == 200
    first = page.json()
    assert first["count"] == 2 and first["next_cursor"]
    more = _call(
        api_schema,
        worker,
        "get",
        "/api/earthquakes",
        query={"limit": 2, "cursor": first["next_cursor"]},
    ).json()
    assert {q["id"] for q in more["items"]}.isdisjoint(q["id"] for q in first["items"])
    one = first["items"][0]["id"]
    path = "/api/earthquakes/{event_id}"
    assert _call(api_schema, worker, "get", path, path_parameters={"event_id": one})
    for event_id, status in (("us0000none", 404), ("-bad", 400)):
        response = _call(
            api_schema, worker, "get", path, path_parameters={"event_id": event_id}
        )
        assert response.status_code == status, response.text
    # Found by fuzzing: a time that leaves datetime's range once made UTC was a 500.
    late = {"since": "0001-01-01T00:00:00+01:00"}
    response = _call(api_schema, worker, "get", "/api/earthquakes", query=late)
    assert response.status_code == 400, response.text

    letters = _call(
        api_schema, worker, "get", "/api/dead-letters", query={"kind": "not_json"}
    ).json()["items"]
    assert [d["error_kind"] for d in letters] == ["not_json"]
    redrive = "/api/dead-letters/redrive"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"kind": "not_json", "dry_run": True}
    response = _call(api_schema, worker, "post", redrive, body=body)
    assert response.status_code == 401
    challenge = {k.lower(): v for k, v in response.headers.items()}
    assert "Bearer" in str(challenge["www-authenticate"])
    dry = _call(api_schema, worker, "post", redrive, body=body, headers=auth).json()
    assert [d["id"] for d in dry["would_redrive"]] == [letters[0]["id"]]
    ids = {"ids": [letters[0]["id"]]}
    sent = _call(api_schema, worker, "post", redrive, body=ids, headers=auth)
    assert sent.status_code == 200 and sent.json()["redriven"] == ids["ids"]
    again = _call(api_schema, worker, "post", redrive, body=ids, headers=auth)
    assert again.status_code == 409 and again.json()["already_redriven"]
    # Found by fuzzing: an id above bigint made the JSON answer fail (500).
    huge = {"ids": [2**64]}
    response = _call(api_schema, worker, "post", redrive, body=huge, headers=auth)
    assert response.status_code == 400, response.text

    assert _call(api_schema, worker, "get", "/dashboard").status_code == 301


def test_chosen_activity_and_alert_requests_keep_to_the_document(
    api_schema: Any, worker: Worker
) -> None:
    """The hottest day windows; a page of alerts and the next through its cursor;
    malformed cursors."""
    query = {"window": "1d", "order": "count", "limit": 10}
    hottest = _call(api_schema, worker, "get", "/api/activity", query=query).json()
    counts = [item["count"] for item in hottest["items"]]
    assert counts and counts == sorted(counts, reverse=True)
    region = hottest["items"][0]["region"]
    one = _call(
        api_schema, worker, "get", "/api/activity", query={**query, "region": region}
    ).json()
    assert {item["region"] for item in one["items"]} == {region}

    first = _call(api_schema, worker, "get", "/api/alerts", query={"limit": 1})
    assert first.status_code == 200
    page = first.json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    assert page["items"][0]["delivery"]["status"] == "off"  # no ALERT_WEBHOOK_URL
    more = _call(
        api_schema,
        worker,
        "get",
        "/api/alerts",
        query={"limit": 1, "cursor": page["next_cursor"]},
    ).json()
    assert more["items"] and more["items"][0]["id"] != page["items"][0]["id"]
    for values in (["2026-12-08T00:00:00Z", "a\u0000b"], ["not a time", "x"], [1]):
        raw = json.dumps(values).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        response = _call(
            api_schema, worker, "get", "/api/alerts", query={"cursor": cursor}
        )
        assert response.status_code == 400, (values, response.text)


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid input, and with invalid input where it has any."""
    out = []
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            out.append((method, path, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                out.append((method, path, GenerationMode.NEGATIVE))
    return out


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_every_operation_keeps_to_the_document(
    method: str, path: str, mode: GenerationMode, api_schema: Any, worker: Worker
) -> None:
    operation = api_schema[path][method]
    base = f"http://127.0.0.1:{worker.web_port}"
    kwargs: dict[str, Any] = {"timeout": 30, "allow_redirects": False}
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        if method == "post":
            # Without the token (401), then with it (what the body asks for).
            response = case.call_and_validate(base_url=base, checks=CHECKS, **kwargs)
            statuses.append(response.status_code)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            response = case.call_and_validate(
                base_url=base, checks=CHECKS, headers=auth, **kwargs
            )
        else:
            response = case.call_and_validate(base_url=base, checks=CHECKS, **kwargs)
        statuses.append(response.status_code)

    fuzz()
    print(method, path, mode.value, len(statuses), sorted(Counter(statuses).items()))
    assert statuses
    worker.assert_alive()
