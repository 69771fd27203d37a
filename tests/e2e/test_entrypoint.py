"""The container entrypoint, run for real against the local stack in both modes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from psycopg2 import sql

from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import load_settings
from tests.support.feeds import FeedServer
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

ENTRYPOINT = Path(sys.executable).with_name("streamapp-entrypoint")
START_TIMEOUT = 120.0


class Entrypoint:
    """``streamapp-entrypoint`` in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.log_path = cwd / "entrypoint.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(ENTRYPOINT), *args],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def cmdline(self) -> list[str]:
        raw = Path(f"/proc/{self.proc.pid}/cmdline").read_bytes()
        return [part.decode() for part in raw.split(b"\0") if part]

    def wait_for(
        self, url: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """GET ``url`` until it answers 200; fails if the process dies first."""
        deadline = time.monotonic() + START_TIMEOUT
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"entrypoint exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                status, body = get(url, headers)
                if status == 200:
                    return status, body
                last = status
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(
            f"{url} not 200 in {START_TIMEOUT}s ({last}):\n{self.log()}"
        )

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it does not exit in time."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def query(env: dict[str, str], statement: Any, params: tuple[Any, ...] = ()) -> Any:
    """Run one statement in its own connection; the first row, if any."""
    settings = load_settings(environ=env, env_file=None)
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchone() if cur.description else None
    finally:
        conn.close()


def drop_leftovers(env: dict[str, str]) -> None:
    """Drop the test's schema and topics (best effort: the stack is shared)."""
    settings = load_settings(environ=env, env_file=None)
    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
        sql.Identifier(settings.postgres_schema)
    )
    with contextlib.suppress(psycopg2.Error):
        query(env, drop)

    async def delete_topics() -> None:
        admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if settings.app_id in t]
            topics += [settings.topic_raw, settings.topic_clean]
            topics.append(settings.topic_dead_letter)
            existing = set(await admin.list_topics())
            await admin.delete_topics([t for t in set(topics) if t in existing])
        finally:
            await admin.close()

    # cleaning up a shared broker must never fail a test
    with contextlib.suppress(Exception):
        asyncio.run(asyncio.wait_for(delete_topics(), 30))


@pytest.fixture
def env(isolated_env: dict[str, str], feed: FeedServer) -> Iterator[dict[str, str]]:
    """Unique app id, topics, schema and web port; the source is a local feed."""
    isolated_env["SOURCE"] = "usgs"
    isolated_env["SOURCE_URL"] = feed.url
    isolated_env.pop("DATABASE_URL", None)
    yield isolated_env
    drop_leftovers(isolated_env)


@pytest.fixture
def running() -> Iterator[list[Entrypoint]]:
    started: list[Entrypoint] = []
    yield started
    for process in started:
        process.stop()


def test_web_mode_migrates_and_execs_the_worker_which_answers_health(
    env: dict[str, str], tmp_path: Path, running: list[Entrypoint]
) -> None:
    env["APP_MODE"] = "web"
    port = int(env["WEB_PORT"])
    ep = Entrypoint(env, tmp_path, "--wait-timeout", "60")
    running.append(ep)

    status, body = ep.wait_for(f"http://127.0.0.1:{port}/health")
    assert status == 200
    assert body["status"] == "ok"

    # exec, not a child: the entrypoint's own pid is now the Faust worker
    argv = ep.cmdline()
    assert "faust" in Path(argv[1] if "python" in argv[0] else argv[0]).name
    assert argv[argv.index("--web-port") + 1] == str(port)
    log = ep.log()
    assert "Kafka and PostgreSQL answer" in log
    schema = env["POSTGRES_SCHEMA"]
    assert f"schema {schema!r}: applied" in log
    # the migration really ran in the test's own schema
    (tables,) = query(
        env,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
        (schema,),
    )
    assert tables >= 2  # the migrations table and the data

    # the image's HEALTHCHECK command agrees
    check = subprocess.run(
        [str(ENTRYPOINT), "--healthcheck"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_jupyter_mode_answers_its_status_api_with_the_token(
    env: dict[str, str], tmp_path: Path, running: list[Entrypoint]
) -> None:
    token = uuid.uuid4().hex
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "probe.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    env.update(
        {
            "APP_MODE": "jupyter",
            "JUPYTER_TOKEN": token,
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "WEB_HOST": "127.0.0.1",
        }
    )
    port = free_port()
    ep = Entrypoint(env, tmp_path, "--jupyter-port", str(port), "--wait-timeout", "60")
    running.append(ep)
    auth = {"Authorization": f"token {token}"}

    status, body = ep.wait_for(f"http://127.0.0.1:{port}/api/status", auth)
    assert status == 200
    assert "started" in body
    # the token is required, and it is not on the (world-readable) command line
    assert get(f"http://127.0.0.1:{port}/api/status")[0] == 403
    assert not any(token in part for part in ep.cmdline())
    # Jupyter serves the notebooks folder it was given
    status, listing = get(f"http://127.0.0.1:{port}/api/contents", auth)
    assert status == 200
    assert [item["name"] for item in listing["content"]] == ["probe.ipynb"]

    check = subprocess.run(
        [str(ENTRYPOINT), "--healthcheck", "--jupyter-port", str(port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_bad_app_mode_exits_2_with_one_line_listing_the_modes(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    isolated_env["APP_MODE"] = "notebook"
    result = subprocess.run(
        [str(ENTRYPOINT)],
        cwd=tmp_path,
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "APP_MODE='notebook'" in lines[0]
    assert "use one of: web, jupyter" in lines[0]


def test_an_unreachable_database_is_named_and_the_wait_is_bounded(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    isolated_env.update({"APP_MODE": "web", "POSTGRES_PORT": str(free_port())})
    isolated_env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [str(ENTRYPOINT), "--wait-timeout", "3"],
        cwd=tmp_path,
        env=isolated_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("streamapp-entrypoint: gave up after 3s: PostgreSQL at")
    assert f":{isolated_env['POSTGRES_PORT']}/" in last
    assert "Kafka" not in last  # the broker answered
    # never the faust command: nothing was started
    assert "APP_MODE=web: exec" not in result.stderr
    assert "***@" in last and "streamapp:streamapp@" not in last
