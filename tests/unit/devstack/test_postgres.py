"""devstack.postgres: its config, the bootstrap SQL, finding the server binaries."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devstack.paths import StackPaths
from devstack.postgres import (
    PG_TOOLS,
    Postgres,
    find_pg_bindir,
    render_pg_bootstrap_sql,
    render_postgres_conf,
)
from streamapp.exceptions import StackError
from tests.unit.devstack.helpers import alt_settings


def test_postgres_conf_listens_on_loopback_only() -> None:
    conf = render_postgres_conf(alt_settings())
    assert "port = 15320" in conf
    assert "listen_addresses = '127.0.0.1'" in conf
    assert "unix_socket_directories = ''" in conf


def test_pg_bootstrap_sql_quotes_and_is_not_superuser() -> None:
    text = render_pg_bootstrap_sql('we"ird', "it's", "db")
    assert 'CREATE ROLE "we""ird"' in text
    assert "PASSWORD 'it''s'" in text
    assert "NOSUPERUSER" in text
    assert 'CREATE DATABASE "db" OWNER "we""ird"' in text
    # single-user mode (-j): each statement ends with ";" and an empty line
    assert text.count(";\n\n") == 4


def test_missing_postgres_binaries(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"PostgreSQL server binaries .* install"):
        find_pg_bindir(path=str(tmp_path), globs=())


def _fake_bindir(root: Path, tools: tuple[str, ...] = PG_TOOLS) -> Path:
    root.mkdir(parents=True)
    for tool in tools:
        exe = root / tool
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return root


def test_pg_bindir_found_on_path_and_prefers_15(tmp_path: Path) -> None:
    on_path = _fake_bindir(tmp_path / "path")
    assert find_pg_bindir(path=str(on_path), globs=()) == on_path
    _fake_bindir(tmp_path / "pg" / "16" / "bin")
    v15 = _fake_bindir(tmp_path / "pg" / "15" / "bin")
    _fake_bindir(tmp_path / "pg" / "14" / "bin", ("initdb",))  # incomplete: skipped
    found = find_pg_bindir(
        path=str(tmp_path / "empty"), globs=(f"{tmp_path}/pg/*/bin",)
    )
    assert found == v15


def test_a_cluster_that_never_ran(tmp_path: Path) -> None:
    pg = Postgres(StackPaths(tmp_path), print, 1.0, alt_settings())
    assert pg.pid() is None
    assert pg.log() == tmp_path / "logs" / "postgres.log"
    assert pg.stop() is False  # nothing to stop: no binaries needed


def test_a_data_dir_kept_outside_logs_next_to_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "abc"
    outside.mkdir(parents=True)
    root = tmp_path / "stack"
    root.mkdir()
    (root / "postgres").symlink_to(outside)
    pg = Postgres(StackPaths(root), print, 1.0, alt_settings())
    assert pg.data() == outside
    assert pg.log() == tmp_path / "outside" / "abc.log"
