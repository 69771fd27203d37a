"""``python -m devstack``: the package outside the runtime, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import devstack

ROOT = Path(__file__).resolve().parents[3]


def test_the_package_re_exports_what_other_code_imports() -> None:
    for name in (
        "kafka_answers",
        "as_postgres_prefix",
        "find_pg_bindir",
        "pid_alive",
        "read_pid",
        "Stack",
        "StackPaths",
        "Listener",
        "parse_listeners",
        "render_kafka_properties",
        "render_zookeeper_properties",
        "main",
    ):
        assert name in devstack.__all__ and callable(getattr(devstack, name))


def test_devstack_is_not_part_of_the_runtime_package() -> None:
    setup = (ROOT / "setup.cfg").read_text()
    find = setup.split("[options.packages.find]", 1)[1].split("[", 1)[0]
    assert "devstack" not in find
    assert "devstack" in (ROOT / ".dockerignore").read_text().split()
    assert not (ROOT / "streamapp" / "stack.py").exists()


def test_cli_without_java_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {
        "PATH": str(tmp_path),
        "STACK_DIR": str(tmp_path / "stack"),
        "HOME": os.environ.get("HOME", "/root"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "up"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("streamapp-stack: java not found")
    assert not (tmp_path / "stack").exists()  # nothing created before the checks


def test_cli_bad_setting_is_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KAFKA_ADVERTISED_LISTENERS": "localhost:9092",
        "STACK_DIR": str(tmp_path / "stack"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "KAFKA_ADVERTISED_LISTENERS" in out.stderr


def test_cli_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "sideways"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "invalid choice: 'sideways'" in out.stderr
    assert out.stderr.startswith("usage: streamapp-stack")
