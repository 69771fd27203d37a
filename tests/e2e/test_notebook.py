"""End to end: seed a fresh namespace through a real worker, run the EDA notebook."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import psycopg2
import psycopg2.errors
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from nbclient import NotebookClient
from psycopg2 import sql

from streamapp.kafka import aiokafka_kwargs
from streamapp.replay import replay
from streamapp.settings import Settings, load_settings
from tests.support.kafka import KafkaAdmin
from tests.support.workers import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "eda.ipynb"
#: Features of the bundled capture the replay source plays (all of them valid).
FEATURES = 146
#: Hostile messages written straight into the raw topic: each must become a dead letter.
BAD_MESSAGES: list[tuple[bytes | None, bytes]] = [
    (b"bad-utf8", b"\xff\xfe\x00 not utf-8"),
    (None, b"{not json"),
    (b"bad-schema", b'{"feature": {"id": "bad", "properties": {}}}'),
    (b"bad-array", b"[1, 2, 3]"),
]
WINDOWED = re.compile(
    r"^WINDOWED_ACTIVITY events=(?P<events>\d+) hourly_windows=(?P<hourly>\d+) "
    r"daily_windows=(?P<daily>\d+) daily_total=(?P<total>\d+)$",
    re.MULTILINE,
)
COMPARISON = re.compile(
    r"^ACTIVITY_COMPARISON table=(?P<table>True|False)(?P<rest>.*)$", re.M
)
RECONCILIATION = re.compile(
    r"^RECONCILIATION raw=(?P<raw>\d+) clean=(?P<clean>\d+) "
    r"dead_letter=(?P<dead_letter>\d+) table=(?P<table>\d+) "
    r"match=(?P<match>True|False)$",
    re.MULTILINE,
)


def table_count(settings: Settings) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(settings.postgres_schema), sql.Identifier("earthquakes")
    )
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
            return int(row[0]) if row else 0
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
        return 0
    finally:
        conn.close()


def activity_daily_total(settings: Settings) -> int | None:
    """Events counted in the ``activity`` table's day windows; None: no table."""
    query = sql.SQL("SELECT coalesce(sum(count), 0) FROM {} WHERE {} = '1d'").format(
        sql.Identifier(settings.postgres_schema, "activity"), sql.Identifier("window")
    )
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
            return int(row[0]) if row else 0
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
        return None
    finally:
        conn.close()


def drop_schema(settings: Settings) -> None:
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(settings.postgres_schema)
                )
            )
    finally:
        conn.close()


def produce_raw(settings: Settings, messages: list[tuple[bytes | None, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all")
        await producer.start()
        try:
            for key, value in messages:
                await (await producer.send(settings.topic_raw, value, key=key))
        finally:
            await producer.stop()

    asyncio.run(run())


def delete_app_topics(settings: Settings) -> None:
    """Delete the worker's own topics (changelogs, leader topic): ``<APP_ID>-...``."""

    async def run() -> None:
        admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
        await admin.start()
        try:
            prefix = f"{settings.app_id}-"
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    asyncio.run(run())


def wait_for(what: str, predicate: Any, worker: Worker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.tail()}")


def execute_notebook(env: dict[str, str], out: Path) -> Any:
    """Run the committed notebook headless in a fresh kernel with ``env``."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",  # jupyter_client starts it with this venv's python
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    try:
        client.execute(env=env)
    finally:
        nbformat.write(nb, out)
    return nb


def outputs_text(cell: Any) -> str:
    parts: list[str] = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def tagged(nb: Any, tag: str) -> Any:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"exactly one cell must be tagged {tag!r}"
    return cells[0]


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged(nb, "reconciliation")
    tagged(nb, "magnitude-distribution")
    tagged(nb, "windowed-activity")
    tagged(nb, "activity-comparison")


def test_notebook_reconciles_a_seeded_stack(
    isolated_env: dict[str, str],
    stack_ready: Settings,
    kafka_admin: KafkaAdmin,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    env = {**isolated_env, "SOURCE": "replay", "FETCH_INTERVAL_SECONDS": "1"}
    settings = load_settings(env, env_file=None)
    # Deployed topics exist before the workers start (as in the other e2e tests).
    for name in (
        settings.topic_raw,
        settings.topic_clean,
        settings.topic_dead_letter,
        settings.topic_activity,
        settings.topic_alerts,
    ):
        kafka_admin.create_topic(name, partitions=settings.topic_partitions)
    try:
        worker = start_worker(env, "notebook-worker")
        wait_for(
            f"{FEATURES} events in the earthquakes table",
            lambda: table_count(settings) == FEATURES,
            worker,
            timeout=300,
        )
        produce_raw(settings, BAD_MESSAGES)
        wait_for(
            f"{len(BAD_MESSAGES)} dead letters",
            lambda: (
                len(replay(settings, settings.topic_dead_letter)) >= len(BAD_MESSAGES)
            ),
            worker,
            timeout=120,
        )
        # Where the worker keeps an activity table, it has counted every event.
        if activity_daily_total(settings) is not None:
            wait_for(
                f"{FEATURES} events in the activity table's day windows",
                lambda: activity_daily_total(settings) == FEATURES,
                worker,
                timeout=120,
            )
        # The worker keeps running: the notebook must cope with a live pipeline.
        nb = execute_notebook(env, tmp_path / "eda.executed.ipynb")
        worker.assert_alive()
        worker.stop()
    finally:
        drop_schema(settings)
        delete_app_topics(settings)

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors

    text = outputs_text(tagged(nb, "reconciliation"))
    found = RECONCILIATION.search(text)
    assert found, text
    assert found["match"] == "True", text
    assert int(found["raw"]) == FEATURES + len(BAD_MESSAGES)
    assert int(found["clean"]) == FEATURES
    assert int(found["dead_letter"]) == len(BAD_MESSAGES)
    assert int(found["table"]) == FEATURES
    report = json.loads(text[found.end() :])  # the JSON-able dict, printed after it
    assert report["match"] is True and all(report["checks"].values())

    windowed = WINDOWED.search(outputs_text(tagged(nb, "windowed-activity")))
    assert windowed, outputs_text(tagged(nb, "windowed-activity"))
    assert int(windowed["events"]) == FEATURES
    assert int(windowed["total"]) == FEATURES
    assert 0 < int(windowed["daily"]) <= int(windowed["hourly"])
    text = outputs_text(tagged(nb, "activity-comparison"))
    compared = COMPARISON.search(text)
    assert compared, text
    if compared["table"] == "True":
        assert "match=True" in compared["rest"], text
    assert any(
        "image/png" in o.get("data", {}) for o in tagged(nb, "activity-plot").outputs
    )

    magnitudes = tagged(nb, "magnitude-distribution")
    assert any("image/png" in o.get("data", {}) for o in magnitudes.outputs)
