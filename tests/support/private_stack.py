"""A private ZooKeeper + Kafka + PostgreSQL stack for tests that stop services.

The shared development stack (2181/9092/5320) is never stopped: scenarios that stop
PostgreSQL or restart the broker run against this one, started once per session
with ``python -m devstack up`` on free ports, its own STACK_DIR and its own
random PostgreSQL password (so tests can grep logs for it), and purged at the end.
Every user (the chaos suite, tests/integration/test_security.py) shares the one
instance: :func:`acquire` starts it, the last :func:`release` purges it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from devstack import as_postgres_prefix, find_pg_bindir, pid_alive, read_pid
from tests.support.paths import ROOT
from tests.support.ports import stack_ports

__all__ = ["PrivateStack", "acquire", "pick_ports", "release"]

_lock = threading.Lock()
_instance: PrivateStack | None = None
_users = 0


def pick_ports() -> dict[str, int]:
    """Free ports in 31000-32699 (tests/integration/test_stack.py picks from
    20000-29999, so the two never collide)."""
    return stack_ports(31000, 32700)


class PrivateStack:
    """Drives ``python -m devstack`` with a private environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = pick_ports()
        self.password = "chaos-" + secrets.token_hex(12)
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KAFKA_", "POSTGRES_", "ZOOKEEPER_"))
            and k not in ("DATABASE_URL", "STACK_DIR")
        }
        self.env = {
            **base,
            "STACK_DIR": str(root),
            "KAFKA_MODE": "zookeeper",
            "ZOOKEEPER_CLIENT_PORT": str(self.ports["zookeeper"]),
            "KAFKA_ZOOKEEPER_CONNECT": f"localhost:{self.ports['zookeeper']}",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:{self.ports['kafka']}",
            "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{self.ports['kafka']}",
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m",
            "POSTGRES_PORT": str(self.ports["postgres"]),
            "POSTGRES_USER": "streamapp",
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": "streamapp",
        }

    # ------------------------------------------------------------------ CLI
    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devstack", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def must(self, *args: str) -> str:
        out = self.cli(*args)
        if out.returncode != 0:
            raise RuntimeError(
                f"devstack {' '.join(args)}: exit {out.returncode}\n"
                f"{out.stdout}{out.stderr}"
            )
        return out.stdout

    def up(self) -> str:
        """Start whatever is not running and wait until it answers."""
        return self.must("up")

    def purge(self) -> str:
        out = self.cli("purge")
        return out.stdout + out.stderr

    # ------------------------------------------------------------------ faults
    @property
    def pg_data(self) -> Path:
        return (self.root / "postgres").resolve()

    def stop_postgres(self) -> float:
        """``pg_ctl stop -m fast`` (as the postgres OS user); returns seconds."""
        t0 = time.monotonic()
        subprocess.run(
            [
                *as_postgres_prefix(),
                str(find_pg_bindir() / "pg_ctl"),
                "stop",
                "-D",
                str(self.pg_data),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "-s",
            ],
            check=True,
            capture_output=True,
            cwd="/",
        )
        return time.monotonic() - t0

    def kafka_pid(self) -> int | None:
        pid = read_pid(self.root / "run" / "kafka.pid")
        marker = str(self.root / "conf") + os.sep
        return pid if pid is not None and pid_alive(pid, marker) else None

    def stop_kafka(self, sig: int = signal.SIGTERM, timeout: float = 90) -> float:
        """Stop the broker (SIGTERM: controlled shutdown); returns seconds."""
        pid = self.kafka_pid()
        if pid is None:
            raise RuntimeError("the private broker is not running")
        marker = str(self.root / "conf") + os.sep
        t0 = time.monotonic()
        os.kill(pid, sig)
        while pid_alive(pid, marker):
            if time.monotonic() - t0 > timeout:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        return time.monotonic() - t0


def acquire(root: Path) -> PrivateStack:
    """The session's private stack, started on first use (reference counted)."""
    global _instance, _users
    with _lock:
        if _instance is None:
            stack = PrivateStack(root)
            try:
                stack.up()
            except Exception:
                print(stack.purge())
                raise
            _instance = stack
        _users += 1
        return _instance


def release() -> None:
    """Drop one reference; the last one purges the stack (down + delete state)."""
    global _instance, _users
    with _lock:
        _users -= 1
        if _users <= 0 and _instance is not None:
            print(_instance.purge())
            _instance = None
            _users = 0
