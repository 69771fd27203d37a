"""Unit tests of streamapp.entrypoint: plans per APP_MODE, main's exits, the waits."""

from __future__ import annotations

import dataclasses
import http.server
import os
import shlex
import socket
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamapp import entrypoint
from streamapp.exceptions import ConfigError, PermanentSinkError
from streamapp.health import HealthReport
from streamapp.settings import Secret, Settings, load_settings


def make_settings(**overrides: Any) -> Settings:
    base = load_settings(environ={"APP_MODE": "web"}, env_file=None)
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment (no APP_* from the shell) in a folder without a .env."""
    for name in ("APP_MODE", "JUPYTER_TOKEN", "LOG_LEVEL", "WEB_PORT", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    return monkeypatch


# ------------------------------------------------------------------ build_plan


def test_web_plan_runs_the_faust_worker_on_the_web_port_after_migrating() -> None:
    plan = entrypoint.build_plan(make_settings(app_mode="web", web_port=7070))
    assert plan.mode == "web"
    assert plan.migrate is True
    assert Path(plan.argv[0]).name == "faust"
    assert plan.argv[1:] == [
        "-A",
        "streamapp",
        "worker",
        "-l",
        "info",
        "--web-port",
        "7070",
    ]
    assert plan.env == {}


@pytest.mark.parametrize(
    ("level", "expected"),
    [("INFO", "info"), ("debug", "debug"), ("warning", "warn"), ("critical", "crit")],
)
def test_log_level_maps_onto_faust_choices(level: str, expected: str) -> None:
    plan = entrypoint.build_plan(make_settings(log_level=level))
    assert plan.argv[plan.argv.index("-l") + 1] == expected


def test_unknown_log_level_is_a_config_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"LOG_LEVEL='loud'.*crit, error, warn"):
        entrypoint.build_plan(make_settings(log_level="loud"))


def test_jupyter_plan_serves_the_notebooks_folder_with_the_token_off_argv(
    tmp_path: Path,
) -> None:
    settings = make_settings(app_mode="jupyter", jupyter_token=Secret("s3cr3t-token"))
    plan = entrypoint.build_plan(
        settings, jupyter_port=8899, notebooks_dir=tmp_path, running_as_root=False
    )
    assert plan.mode == "jupyter"
    assert plan.migrate is False
    assert Path(plan.argv[0]).name == "jupyter"
    assert plan.argv[1] == "lab"
    assert "--ip=0.0.0.0" in plan.argv
    assert "--port=8899" in plan.argv
    assert "--no-browser" in plan.argv
    assert "--ServerApp.port_retries=0" in plan.argv
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in plan.argv
    assert "--allow-root" not in plan.argv
    # the token goes through the environment, never the (world-readable) argv
    assert plan.env == {"JUPYTER_TOKEN": "s3cr3t-token"}
    assert not any("s3cr3t" in arg for arg in plan.argv)
    assert "s3cr3t" not in plan.describe()
    assert "JUPYTER_TOKEN set in the environment" in plan.describe()


def test_jupyter_without_token_lets_jupyter_generate_one(tmp_path: Path) -> None:
    plan = entrypoint.build_plan(
        make_settings(app_mode="jupyter"), notebooks_dir=tmp_path, running_as_root=False
    )
    assert plan.env == {}


def test_jupyter_as_root_adds_allow_root(tmp_path: Path) -> None:
    plan = entrypoint.build_plan(
        make_settings(app_mode="jupyter"), notebooks_dir=tmp_path, running_as_root=True
    )
    assert plan.argv[-1] == "--allow-root"


def test_jupyter_needs_an_existing_notebooks_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="notebooks folder"):
        entrypoint.build_plan(
            make_settings(app_mode="jupyter"), notebooks_dir=tmp_path / "missing"
        )


@pytest.mark.parametrize("mode", ["", "  ", "worker"])
def test_unknown_or_empty_mode_lists_the_valid_modes(mode: str) -> None:
    with pytest.raises(ConfigError, match=r"APP_MODE .*use one of: web, jupyter$"):
        entrypoint.build_plan(make_settings(app_mode=mode))


def test_executables_are_taken_next_to_this_python() -> None:
    plan = entrypoint.build_plan(make_settings())
    assert plan.argv[0] == str(Path(sys.executable).with_name("faust"))


# ------------------------------------------------------------------------ main


def test_dry_run_prints_the_web_command_and_contacts_nothing(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("APP_MODE", "web")
    env.setenv("WEB_PORT", "6123")
    # unreachable dependencies: a dry run must not even try them
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.invalid:1")
    env.setenv("POSTGRES_HOST", "postgres.invalid")
    assert entrypoint.main(["--dry-run"]) == 0
    out = capsys.readouterr().out.strip()
    assert shlex.split(out)[1:] == [
        "-A",
        "streamapp",
        "worker",
        "-l",
        "info",
        "--web-port",
        "6123",
    ]


def test_dry_run_jupyter(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("APP_MODE", "jupyter")
    env.setenv("JUPYTER_TOKEN", "hunter2-token")
    assert entrypoint.main(["--dry-run", "--jupyter-port", "8999"]) == 0
    out = capsys.readouterr().out
    assert " lab " in out and "--port=8999" in out
    assert "hunter2" not in out


def test_bad_app_mode_exits_2_with_one_line_naming_the_modes(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("APP_MODE", "notebook")
    assert entrypoint.main(["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "APP_MODE='notebook'" in err
    assert "web, jupyter" in err


def test_any_config_error_exits_2_with_one_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("WEB_PORT", "not-a-port")
    assert entrypoint.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "configuration error: WEB_PORT" in err


def test_jupyter_mode_with_missing_notebooks_folder_exits_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env.setenv("APP_MODE", "jupyter")
    assert entrypoint.main(["--dry-run", "--notebooks-dir", str(tmp_path / "no")]) == 2
    assert "notebooks folder" in capsys.readouterr().err


class Recorder:
    """Stands in for wait / migrate / execvp and records the order of the calls."""

    def __init__(self, wait_result: str | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.wait_result = wait_result
        self.migrate_error: Exception | None = None

    def wait(self, settings: Settings, timeout: float) -> str | None:
        self.calls.append(("wait", timeout))
        return self.wait_result

    def migrate(self, settings: Settings) -> list[str]:
        self.calls.append(("migrate", settings.postgres_schema))
        if self.migrate_error:
            raise self.migrate_error
        return ["0001_initial.sql"]

    def execvp(self, file: str, args: list[str]) -> None:
        self.calls.append(("exec", list(args)))


@pytest.fixture
def recorder(env: pytest.MonkeyPatch) -> Iterator[Recorder]:
    rec = Recorder()
    env.setattr(entrypoint, "wait_for_dependencies", rec.wait)
    env.setattr(entrypoint, "run_migration", rec.migrate)
    env.setattr(entrypoint.os, "execvp", rec.execvp)
    yield rec


def test_web_waits_then_migrates_then_execs_the_worker(
    env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    env.setenv("APP_MODE", "web")
    env.setenv("POSTGRES_SCHEMA", "unit_ep")
    entrypoint.main(["--wait-timeout", "7"])
    assert [name for name, _ in recorder.calls] == ["wait", "migrate", "exec"]
    assert recorder.calls[0] == ("wait", 7.0)
    assert recorder.calls[1] == ("migrate", "unit_ep")
    assert recorder.calls[2][1][1:4] == ["-A", "streamapp", "worker"]


def test_jupyter_waits_then_execs_without_migrating_and_exports_the_token(
    env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    env.setenv("APP_MODE", "jupyter")
    env.setenv("JUPYTER_TOKEN", "tok-from-settings")
    entrypoint.main([])
    assert [name for name, _ in recorder.calls] == ["wait", "exec"]
    assert recorder.calls[1][1][1] == "lab"
    assert os.environ["JUPYTER_TOKEN"] == "tok-from-settings"


def test_unanswered_dependency_exits_1_with_the_message(
    env: pytest.MonkeyPatch, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("APP_MODE", "web")
    recorder.wait_result = "gave up after 60s: Kafka at kafka:29092 did not answer"
    assert entrypoint.main([]) == 1
    assert [name for name, _ in recorder.calls] == ["wait"]
    assert "Kafka at kafka:29092 did not answer" in capsys.readouterr().err


def test_failed_migration_exits_1_and_never_execs(
    env: pytest.MonkeyPatch, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("APP_MODE", "web")
    recorder.migrate_error = PermanentSinkError("migration 0001 was changed")
    assert entrypoint.main([]) == 1
    assert [name for name, _ in recorder.calls] == ["wait", "migrate"]
    assert "schema migration failed: migration 0001 was changed" in (
        capsys.readouterr().err
    )


def test_run_migration_calls_streamapp_db_migrate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Settings] = []

    def migrate(settings: Settings) -> list[str]:
        seen.append(settings)
        return ["0001_initial.sql"]

    monkeypatch.setitem(
        sys.modules, "streamapp.db", types.SimpleNamespace(migrate=migrate)
    )
    settings = make_settings()
    assert entrypoint.run_migration(settings) == ["0001_initial.sql"]
    assert seen == [settings]


# ----------------------------------------------------------------------- waiting


def _reports(*problem_sets: dict[str, str]) -> Iterator[HealthReport]:
    for problems in problem_sets:
        yield HealthReport(problems=problems, checked_at=0.0)


def test_wait_returns_none_once_both_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    reports = _reports({"kafka": "refused", "postgres": "refused"}, {"kafka": "x"}, {})
    calls: list[float] = []

    async def check_health(settings: Settings, timeout: float) -> HealthReport:  # noqa: ASYNC109
        calls.append(timeout)
        return next(reports)

    monkeypatch.setattr("streamapp.health.check_health", check_health)
    assert entrypoint.wait_for_dependencies(make_settings(), 30, interval=0.01) is None
    assert len(calls) == 3
    assert all(0 < t <= entrypoint.CHECK_TIMEOUT_SECONDS for t in calls)


def test_wait_gives_up_naming_only_the_silent_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def check_health(settings: Settings, timeout: float) -> HealthReport:  # noqa: ASYNC109
        return HealthReport(problems={"postgres": "Connection refused"}, checked_at=0)

    monkeypatch.setattr("streamapp.health.check_health", check_health)
    settings = make_settings(postgres_password=Secret("pw-never-shown"))
    message = entrypoint.wait_for_dependencies(settings, 0.2, interval=0.05)
    assert message is not None
    assert message.startswith("gave up after 0.2s: PostgreSQL at ")
    assert "did not answer (Connection refused)" in message
    assert "Kafka" not in message
    assert "pw-never-shown" not in message


def test_wait_against_closed_ports_is_bounded_and_names_both() -> None:
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        kafka_port, pg_port = a.getsockname()[1], b.getsockname()[1]
        settings = load_settings(
            environ={
                "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
                "POSTGRES_HOST": "127.0.0.1",
                "POSTGRES_PORT": str(pg_port),
            },
            env_file=None,
        )
        message = entrypoint.wait_for_dependencies(settings, 1.0, interval=0.2)
    assert message is not None
    assert f"Kafka at 127.0.0.1:{kafka_port} did not answer" in message
    assert f"PostgreSQL at postgresql://streamapp:***@127.0.0.1:{pg_port}" in message
    assert "streamapp:streamapp@" not in message


# ------------------------------------------------------------------- healthcheck


class _Server:
    """A local HTTP server answering every GET with a fixed status; records headers."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.seen: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append((self.path, self.headers.get("Authorization")))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1)])
def test_healthcheck_web_probes_health(status: int, code: int) -> None:
    server = _Server(status)
    try:
        settings = make_settings(app_mode="web", web_port=server.port)
        assert entrypoint.healthcheck(settings) == code
    finally:
        server.close()
    assert server.seen == [("/health", None)]


def test_healthcheck_jupyter_uses_the_token_on_the_status_api() -> None:
    server = _Server(200)
    try:
        settings = make_settings(app_mode="jupyter", jupyter_token=Secret("tkn"))
        assert entrypoint.healthcheck(settings, jupyter_port=server.port) == 0
    finally:
        server.close()
    assert server.seen == [("/api/status", "token tkn")]


def test_healthcheck_jupyter_without_token_probes_the_api_root() -> None:
    server = _Server(200)
    try:
        settings = make_settings(app_mode="jupyter")
        assert entrypoint.healthcheck(settings, jupyter_port=server.port) == 0
    finally:
        server.close()
    assert server.seen == [("/api", None)]


def test_healthcheck_nothing_listening_is_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        assert entrypoint.healthcheck(make_settings(web_port=port)) == 1
    assert "did not answer" in capsys.readouterr().err
