"""Process, pid-file and port helpers shared by the services of the stack."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from streamapp.exceptions import StackError

__all__ = [
    "STOP_TIMEOUT",
    "Echo",
    "failure",
    "pid_alive",
    "port_free_or_fail",
    "port_in_use",
    "read_pid",
    "terminate",
    "wait_until",
]

STOP_TIMEOUT = 60.0

Echo = Callable[[str], None]


def pid_alive(pid: int, marker: str) -> bool:
    """The process lives (not a zombie) and its command line contains ``marker``."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
        return state not in ("Z", "X") and marker in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    """The first number of a pid file; None when missing or garbage."""
    try:
        text = path.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with (
        contextlib.suppress(OSError),
        socket.create_connection((host, port), timeout=1),
    ):
        return True
    return False


def port_free_or_fail(service: str, port: int, setting: str) -> None:
    """StackError (one line) when a process we did not start holds ``port``."""
    if port_in_use(port):
        raise StackError(
            f"port {port} for {service} is already in use by another process: "
            f"stop it (see `ss -ltnp 'sport = :{port}'`) "
            f"or choose another {setting}"
        )


def failure(what: str, logs: Sequence[Path]) -> StackError:
    """One line: what failed and where its log is (the log itself stays there)."""
    written = [p for p in logs if p.is_file() and p.stat().st_size > 0]
    if not written:
        return StackError(what)
    return StackError(f"{what}; see {' and '.join(map(str, written))}")


def wait_until(
    name: str,
    answers: Callable[[], bool],
    alive: Callable[[], bool],
    timeout: float,
    logs: Sequence[Path],
) -> None:
    """Poll ``answers`` until true; StackError when the process dies or time is up."""
    deadline = time.monotonic() + timeout
    while not answers():
        if not alive():
            raise failure(f"{name} exited during start-up", logs)
        if time.monotonic() > deadline:
            raise failure(f"{name} did not answer within {timeout:.0f}s", logs)
        time.sleep(0.25)


def terminate(
    name: str, pid: int, marker: str, echo: Echo, timeout: float = STOP_TIMEOUT
) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; reaps it when it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid, marker):
        if time.monotonic() > deadline:
            echo(f"{name}: still running after {timeout:.0f}s, sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.2)
    # Reap it when it is our child (a failed start in this very run).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
