"""devstack.process: pids, ports, waiting, and the one-line failures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.process import (
    failure,
    pid_alive,
    port_free_or_fail,
    port_in_use,
    read_pid,
    terminate,
    wait_until,
)
from streamapp.exceptions import StackError


def test_pid_alive_checks_the_command_line() -> None:
    me = os.getpid()
    assert pid_alive(me, "python")
    assert not pid_alive(me, "no-such-marker-in-my-cmdline")
    assert not pid_alive(2**22 + 12345, "")


def test_read_pid(tmp_path: Path) -> None:
    assert read_pid(tmp_path / "none.pid") is None
    (tmp_path / "a.pid").write_text("123\n")
    assert read_pid(tmp_path / "a.pid") == 123
    (tmp_path / "b.pid").write_text("garbage")
    assert read_pid(tmp_path / "b.pid") is None


def test_port_in_use_and_a_stranger_on_it() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_in_use(port)
        with pytest.raises(StackError, match=f"port {port} for kafka is already"):
            port_free_or_fail("kafka", port, "KAFKA_ADVERTISED_LISTENERS")
    assert not port_in_use(port)
    port_free_or_fail("kafka", port, "KAFKA_ADVERTISED_LISTENERS")


def test_failure_names_the_log_not_its_content(tmp_path: Path) -> None:
    log, out, empty = tmp_path / "k.log", tmp_path / "k.out", tmp_path / "e.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    out.write_text("x\n")
    empty.touch()
    err = failure("kafka exited during start-up", [log, out, empty])
    assert str(err) == f"kafka exited during start-up; see {log} and {out}"
    assert str(failure("x failed", [tmp_path / "missing.log"])) == "x failed"


def test_wait_until_a_dead_process_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("ERROR something\n" * 60)
    with pytest.raises(StackError) as info:
        wait_until("svc", lambda: False, lambda: False, 5.0, [log])
    assert str(info.value) == f"svc exited during start-up; see {log}"


def test_wait_until_timeout(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"^svc did not answer within 0s$"):
        wait_until("svc", lambda: False, lambda: True, 0.0, [tmp_path / "none"])
    wait_until("svc", lambda: True, lambda: False, 0.0, [])


def test_terminate_stops_and_reaps_a_child() -> None:
    marker = "devstack-terminate-test"
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"]
    )
    # The child's command line shows the marker once it has exec'd Python.
    deadline = time.monotonic() + 10
    while not pid_alive(proc.pid, marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pid_alive(proc.pid, marker)
    lines: list[str] = []
    terminate("svc", proc.pid, marker, lines.append, timeout=10)
    assert not pid_alive(proc.pid, marker)
    assert lines == []
