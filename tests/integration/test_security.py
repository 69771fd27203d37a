"""Security checks: database role, secrets in logs/API/errors, bad config, Kafka auth.

* The app's PostgreSQL role is no superuser, holds no other role, owns only its
  database and the objects it created, and is refused every superuser action.
* The database password (a random one, on a private stack) never appears in the
  worker's log, its /api/* and /health responses, or its error messages, including
  while PostgreSQL is down and for a worker configured with a wrong password.
* A malformed DATABASE_URL or KAFKA_BOOTSTRAP_SERVERS stops ``faust -A streamapp
  worker`` at once with a non-zero status and ONE line, no traceback.
* KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* reach the Faust app's
  broker credentials, what its producer and consumer hand to aiokafka, and the
  plain aiokafka clients (streamapp.kafka.aiokafka_kwargs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from streamapp.db import migrate
from streamapp.settings import Settings, load_settings
from tests.chaos.harness import (
    BackgroundProducer,
    ChaosRun,
    Target,
    delete_topics_with_prefix,
    expected_totals,
    make_chaos_data,
)
from tests.support import private_stack
from tests.support.paths import FAUST, ROOT
from tests.support.ports import free_port
from tests.support.private_stack import PrivateStack
from tests.support.workers import Worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


# ------------------------------------------------------------------ the role
def _refused(conn: Any, statement: str) -> str:
    """Run ``statement`` in a savepoint; return the SQLSTATE it was refused with."""
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT probe")
        try:
            cur.execute(statement)
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT probe")
            return str(exc.pgcode)
        cur.execute("ROLLBACK TO SAVEPOINT probe")
    return "accepted"


def test_app_role_is_no_superuser_and_owns_only_its_objects(
    stack_ready: Settings, pg_schema: str
) -> None:
    settings = dataclasses.replace(stack_ready, postgres_schema=pg_schema)
    migrate(settings)
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication,"
                " rolbypassrls, oid FROM pg_roles WHERE rolname = current_user"
            )
            *powers, oid = cur.fetchone()
            assert powers == [False] * 5, powers
            cur.execute(
                "SELECT count(*) FROM pg_auth_members WHERE member = %s", (oid,)
            )
            assert cur.fetchone()[0] == 0, "the app role is a member of other roles"
            cur.execute("SELECT datname FROM pg_database WHERE datdba = %s", (oid,))
            assert [r[0] for r in cur.fetchall()] == [settings.postgres_db]
            cur.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.relowner = %s AND (n.nspname IN"
                " ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg\\_%%')"
                # TOAST tables and temporary tables of its own sessions are its own
                " AND n.nspname <> 'pg_toast' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
                " AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'",
                (oid,),
            )
            assert cur.fetchall() == [], "the app role owns system objects"
            cur.execute(
                "SELECT nspname FROM pg_namespace WHERE nspowner = %s AND"
                " (nspname IN ('pg_catalog', 'information_schema', 'public')"
                " OR nspname LIKE 'pg\\_%%')",
                (oid,),
            )
            assert cur.fetchall() == [], "the app role owns a system schema"
            cur.execute(
                "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = %s",
                (pg_schema,),
            )
            tables = dict(cur.fetchall())
        assert set(tables) >= {"earthquakes", "dead_letters", "schema_migrations"}
        assert set(tables.values()) == {settings.postgres_user}
        refusals = {
            statement: _refused(conn, statement)
            for statement in (
                "CREATE ROLE chaos_intruder",
                "CREATE DATABASE chaos_intruder",
                "ALTER SYSTEM SET work_mem = '8MB'",
                "SET ROLE postgres",
                "SELECT rolpassword FROM pg_authid",
                "COPY (SELECT 1) TO PROGRAM 'true'",
                "SELECT pg_read_file('postgresql.conf')",
                "CREATE EXTENSION IF NOT EXISTS file_fdw",
            )
        }
        accepted = [s for s, code in refusals.items() if code == "accepted"]
        assert not accepted, f"the app role may: {accepted}"
    finally:
        conn.rollback()
        conn.close()


# ------------------------------------------------------------------ secrets
@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    stack = private_stack.acquire(tmp_path_factory.mktemp("sec-stack") / "stack")
    try:
        yield stack
    finally:
        private_stack.release()


def _fetch(url: str, method: str = "GET", headers: dict | None = None) -> str:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return f"{resp.status} {resp.read().decode('utf-8', 'replace')}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode('utf-8', 'replace')}"


def _pages(worker: Worker, event_id: str) -> dict[str, str]:
    base = f"http://127.0.0.1:{worker.web_port}"
    out = {
        path: _fetch(base + path)
        for path in (
            "/health",
            "/api/stats",
            "/api/earthquakes?limit=5",
            f"/api/earthquakes/{urllib.parse.quote(event_id)}",
            "/api/earthquakes/no-such-event",
            "/api/earthquakes?since=garbage",
            "/api/dead-letters?limit=5",
            "/api/lag",
            "/metrics",
            "/dashboard/",
        )
    }
    out["POST redrive"] = _fetch(
        base + "/api/dead-letters/redrive",
        method="POST",
        headers={"Authorization": "Bearer wrong"},
    )
    return out


def test_database_password_never_leaks(private: PrivateStack, tmp_path: Path) -> None:
    password = private.password
    quoted = urllib.parse.quote(password, safe="")
    run = ChaosRun(Target("private", dict(private.env)), tmp_path, "security")
    try:
        # A worker with a wrong password: it must fail without echoing it.
        wrong = "wrong-" + secrets.token_hex(12)
        liar = run.start_worker(
            "wrong-password",
            {
                "POSTGRES_PASSWORD": wrong,
                "APP_ID": run.tag + "-liar",
                "TOPIC_RAW": run.tag + "-liar.raw",
                "TOPIC_CLEAN": run.tag + "-liar.clean",
                "TOPIC_DEAD_LETTER": run.tag + "-liar.dead-letter",
            },
        )
        run.overrides["REDRIVE_TOKEN"] = "t-" + secrets.token_hex(16)
        run.create_raw_topic()
        worker = run.start_worker()
        worker.wait_healthy()
        assert worker.proc is not None
        cmdline = Path(f"/proc/{worker.proc.pid}/cmdline").read_bytes()
        data = make_chaos_data(300, seed=909)
        BackgroundProducer(
            run.settings, run.settings.topic_raw, data.messages
        ).start().wait(120)
        drained = run.wait_drained(*expected_totals(data), timeout=180, alive=[worker])
        assert drained is not None, worker.tail()
        event_id = next(e.id for e in data.expect.values() if e.valid)
        pages = _pages(worker, event_id)
        assert pages["/health"].startswith("200"), pages["/health"]

        # PostgreSQL down: errors everywhere, and the sink retries a batch.
        private.stop_postgres()
        try:
            more = make_chaos_data(50, seed=910, id_offset=1_000_000)
            BackgroundProducer(
                run.settings, run.settings.topic_raw, more.messages
            ).start().wait(60)
            time.sleep(8)
            down = {
                f"{k} (postgres down)": v for k, v in _pages(worker, event_id).items()
            }
        finally:
            private.up()
        assert down["/health (postgres down)"].startswith("503"), down
        assert "postgres" in down["/health (postgres down)"]
        deadline = time.monotonic() + 120
        while liar.proc is not None and liar.proc.poll() is None:
            if time.monotonic() > deadline:
                liar.stop()
                break
            time.sleep(1)
        logs = run.logs()
    finally:
        run.close()

    texts = {"worker logs": logs, "worker cmdline": cmdline.decode(), **pages, **down}
    leaks = [
        name
        for name, text in texts.items()
        if password in text or quoted in text or wrong in text
    ]
    assert not leaks, f"the password appears in: {leaks}"
    # The failures really happened (so the grep looked at error messages).
    assert "retrying the same" in logs, "no sink retry was logged while PG was down"
    assert "password authentication failed" in logs, "the wrong-password worker"
    assert "***" in logs  # the redacted URL is what the errors show


# ------------------------------------------------------------------ bad config
SECRET = "Sup3r-" + secrets.token_hex(6)
BAD_CONFIG = [
    ("DATABASE_URL", "not a url"),
    ("DATABASE_URL", f"postgresql://streamapp:{SECRET}@localhost:notaport/streamapp"),
    ("DATABASE_URL", f"postgresql://streamapp:{SECRET}@/streamapp"),
    ("DATABASE_URL", f"mysql://streamapp:{SECRET}@localhost:3306/streamapp"),
    ("DATABASE_URL", f"postgresql://streamapp:{SECRET}@localhost:99999/streamapp"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka://localhost:9092"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092;localhost:9093"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092,,"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:99999"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:0"),
]


@pytest.mark.parametrize(("name", "value"), BAD_CONFIG)
def test_malformed_config_stops_the_worker_with_one_line(name: str, value: str) -> None:
    app_id = "sec-badconfig-" + secrets.token_hex(4)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update({name: value, "APP_ID": app_id, "WEB_PORT": str(free_port())})
    try:
        out = subprocess.run(
            [str(FAUST), "-A", "streamapp", "worker", "-l", "info"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{name}={value!r}: the worker did not stop within 60 s ({exc})")
    finally:
        # A worker that wrongly started may have connected to the shared broker
        # (yarl drops port 0: localhost:0 becomes localhost:9092).
        shutil.rmtree(
            Path(tempfile.gettempdir()) / "streamapp-faust" / app_id,
            ignore_errors=True,
        )
        with contextlib.suppress(Exception):
            delete_topics_with_prefix(load_settings(), app_id)
    text = (out.stdout + out.stderr).strip()
    assert out.returncode != 0, f"{name}={value!r} was accepted:\n{text[-2000:]}"
    assert "Traceback" not in text, f"{name}={value!r}:\n{text[-3000:]}"
    lines = text.splitlines()
    assert len(lines) == 1, f"{name}={value!r}: {len(lines)} lines:\n{text[-3000:]}"
    assert name in lines[0] and "configuration error" in lines[0], lines[0]
    assert SECRET not in text


# ------------------------------------------------------------------ Kafka auth
PROBE = r"""
import json
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from streamapp.app import app, settings
from streamapp.kafka import aiokafka_kwargs

def show(kwargs):
    out = {}
    for key, value in kwargs.items():
        if key == "ssl_context":
            out[key] = None if value is None else {
                "verify_mode": int(value.verify_mode),
                "check_hostname": value.check_hostname,
                "cas": [dict(x[0] for x in c["subject"]) for c in value.get_ca_certs()],
            }
        else:
            out[key] = value
    return out

creds = app.conf.broker_credentials
print(json.dumps({
    "credentials": type(creds).__name__,
    "producer": show(app.producer._settings_auth()),
    "consumer": show(credentials_to_aiokafka_auth(creds, app.conf.ssl_context)),
    "aiokafka_kwargs": show(aiokafka_kwargs(settings)),
}))
"""


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed CA certificate and its key (PEM)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "ca.pem", folder / "ca.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=streamapp-test-ca",
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _probe(extra: dict[str, str]) -> dict[str, Any]:
    env = {**os.environ, "APP_ID": "sec-probe", **extra}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_settings_reach_faust_and_aiokafka(
    mechanism: str, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    password = "kafka-" + secrets.token_hex(8)
    got = _probe(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": "svc-streamapp",
            "KAFKA_SASL_PASSWORD": password,
            "KAFKA_SSL_CAFILE": str(cert),
            "KAFKA_SSL_CERTFILE": str(cert),
            "KAFKA_SSL_KEYFILE": str(key),
        }
    )
    assert got["credentials"] == "SASLCredentials"
    for client in ("producer", "consumer", "aiokafka_kwargs"):
        kwargs = got[client]
        assert kwargs["security_protocol"] == "SASL_SSL", (client, kwargs)
        assert kwargs["sasl_mechanism"] == mechanism, (client, kwargs)
        assert kwargs["sasl_plain_username"] == "svc-streamapp"
        assert kwargs["sasl_plain_password"] == password
        ctx = kwargs["ssl_context"]
        assert ctx["verify_mode"] == 2 and ctx["check_hostname"] is True
        assert {"commonName": "streamapp-test-ca"} in ctx["cas"], ctx


def test_ssl_settings_reach_faust_and_aiokafka(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    got = _probe(
        {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": str(cert),
            "KAFKA_SSL_CERTFILE": str(cert),
            "KAFKA_SSL_KEYFILE": str(key),
        }
    )
    assert got["credentials"] == "SSLCredentials"
    for client in ("producer", "consumer", "aiokafka_kwargs"):
        kwargs = got[client]
        assert kwargs["security_protocol"] == "SSL", (client, kwargs)
        assert "sasl_mechanism" not in kwargs
        assert {"commonName": "streamapp-test-ca"} in kwargs["ssl_context"]["cas"]


def test_plaintext_is_the_default_and_sends_no_credentials() -> None:
    got = _probe({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert got["credentials"] == "NoneType"
    for client in ("producer", "consumer", "aiokafka_kwargs"):
        assert got[client]["security_protocol"] == "PLAINTEXT"
        assert "sasl_plain_password" not in got[client]
