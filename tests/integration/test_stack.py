"""`python -m devstack` for real, on its own ports and state dir, in both modes.

The shared development stack (2181/9092/5320, ./.stack) is never touched: every test
gets free ports and a temporary STACK_DIR through the environment of a subprocess.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from devstack import pid_alive
from devstack.zookeeper import ZooKeeperClient
from tests.integration.test_kafka_roundtrip import check_roundtrip, roundtrip
from tests.support.aio import run_sync
from tests.support.kafka import KafkaAdmin
from tests.support.ports import stack_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def free_ports() -> dict[str, int]:
    """Free ports in 20000-29999 (the private stack of tests/support picks from
    31000-32699: the two never collide; kafka + 1 is the KRaft controller)."""
    return stack_ports(20000, 30000)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class AltStack:
    """A private stack: free ports, its own STACK_DIR, driven through the CLI."""

    root: Path
    ports: dict[str, int]
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.ports['kafka']}"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devstack", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def must(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = self.run(*args)
        assert out.returncode == 0, (
            f"{args}: exit {out.returncode}\n{out.stdout}{out.stderr}"
        )
        return out

    def pg_connect(self, password: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host="localhost",
            port=self.ports["postgres"],
            user="streamapp",
            password=password,
            dbname="streamapp",
            connect_timeout=10,
        )


@pytest.fixture
def alt_stack(tmp_path: Path) -> Iterator[AltStack]:
    ports = free_ports()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "POSTGRES_"))
    }
    env.pop("DATABASE_URL", None)
    env.pop("ZOOKEEPER_CLIENT_PORT", None)
    env.update(
        {
            "STACK_DIR": str(tmp_path / "stack"),
            "ZOOKEEPER_CLIENT_PORT": str(ports["zookeeper"]),
            "KAFKA_ZOOKEEPER_CONNECT": f"localhost:{ports['zookeeper']}",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:{ports['kafka']}",
            "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{ports['kafka']}",
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m",
            "POSTGRES_PORT": str(ports["postgres"]),
            "POSTGRES_USER": "streamapp",
            "POSTGRES_PASSWORD": "streamapp",
            "POSTGRES_DB": "streamapp",
        }
    )
    stack = AltStack(tmp_path / "stack", ports, env)
    try:
        yield stack
    finally:
        out = stack.run("purge")  # down + delete the state, whatever the test did
        print(out.stdout, out.stderr)


def exercise(stack: AltStack, mode: str) -> None:
    """up, up again (no-op), status, 1,000-message round trip, Postgres, down."""
    first = stack.must("up", "--mode", mode)
    assert "kafka: started" in first.stdout, first.stdout
    assert f"started in {mode} mode" in first.stdout

    second = stack.must("up", "--mode", mode)
    assert "stack: already up, nothing to do" in second.stdout, second.stdout
    assert "started" not in second.stdout

    status = stack.must("status")
    assert status.stdout.count("answering") == (3 if mode == "zookeeper" else 2)
    assert "NOT answering" not in status.stdout
    assert f"{mode} mode" in status.stdout

    admin = KafkaAdmin(stack.bootstrap)
    topic = admin.create_topic(f"t_stack_{mode}_{uuid.uuid4().hex[:8]}", partitions=4)
    result = run_sync(roundtrip(admin.kwargs, topic, group_id=f"g_{topic}"))
    check_roundtrip(result)

    conn = stack.pg_connect("streamapp")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, inet_server_port()")
        assert cur.fetchone() == ("streamapp", stack.ports["postgres"])
    conn.close()
    with pytest.raises(
        psycopg2.OperationalError, match="password authentication failed"
    ):
        stack.pg_connect("not-the-password")

    down = stack.must("down")
    assert "kafka: stopped" in down.stdout and "postgres: stopped" in down.stdout
    busy = [p for p in stack.ports.values() if listening(p)]
    assert busy == [], f"still listening after down: {busy}"
    assert not list((stack.root / "run").glob("*.pid"))
    assert stack.run("status").returncode == 3
    assert "nothing was running" in stack.must("down").stdout


def test_zookeeper_mode_up_twice_roundtrip_down(alt_stack: AltStack) -> None:
    exercise(alt_stack, "zookeeper")
    assert (alt_stack.root / "conf" / "zookeeper.properties").is_file()


def test_kraft_mode_up_twice_roundtrip_down(alt_stack: AltStack) -> None:
    exercise(alt_stack, "kraft")
    assert (alt_stack.root / "data" / "kafka-kraft" / "meta.properties").is_file()
    assert not (alt_stack.root / "conf" / "zookeeper.properties").exists()


def test_restart_keeps_data_and_is_idempotent(alt_stack: AltStack) -> None:
    """down then up again reuses the data dirs (no initdb, no second format)."""
    alt_stack.must("up", "--mode", "kraft")
    alt_stack.must("down")
    again = alt_stack.must("up", "--mode", "kraft")
    assert "initdb" not in again.stdout and "formatting" not in again.stdout
    assert "kafka: started" in again.stdout
    switch = alt_stack.run("up", "--mode", "zookeeper")
    assert switch.returncode == 1
    assert "run `make down` before switching" in switch.stderr


def test_port_taken_by_a_stranger_is_one_clear_line(alt_stack: AltStack) -> None:
    with socket.socket() as stranger:
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stranger.bind(("127.0.0.1", alt_stack.ports["zookeeper"]))
        stranger.listen()
        out = alt_stack.run("up", "--mode", "zookeeper")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert (
        f"port {alt_stack.ports['zookeeper']} for zookeeper is already in use"
        in lines[0]
    )
    assert "Traceback" not in out.stderr + out.stdout
    # Nothing was started.
    assert not listening(alt_stack.ports["kafka"])
    assert not listening(alt_stack.ports["postgres"])


# ------------------------------------------------------------ a SIGKILLed broker
def kill_broker(stack: AltStack) -> int:
    """SIGKILL the broker and wait until it is gone; returns its pid."""
    pid = int((stack.root / "run" / "kafka.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid, str(stack.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid, str(stack.root))
    return pid


def up_after_crash(stack: AltStack, mode: str) -> tuple[str, float]:
    """up, SIGKILL the broker, ONE up: exit 0; returns its stdout and seconds."""
    stack.must("up", "--mode", mode)
    kill_broker(stack)
    t0 = time.monotonic()
    again = stack.run("up", "--mode", mode)
    took = time.monotonic() - t0
    assert again.returncode == 0, (
        f"exit {again.returncode}\n{again.stdout}{again.stderr}"
    )
    assert f"kafka: started in {mode} mode" in again.stdout, again.stdout
    assert "postgres: already running" in again.stdout
    print(f"{mode}: SIGKILL then one up: {took:.1f}s\n{again.stdout}")
    return again.stdout, took


def small_roundtrip(stack: AltStack, name: str) -> None:
    admin = KafkaAdmin(stack.bootstrap)
    topic = admin.create_topic(f"t_{name}_{uuid.uuid4().hex[:8]}", partitions=4)
    result = run_sync(roundtrip(admin.kwargs, topic, f"g_{topic}", messages=100))
    check_roundtrip(result, messages=100)


def session_expired(stack: AltStack, session: str, timeout: float) -> bool:
    """ZooKeeper logged the expiry of ``session`` (its timeout is 18 s)."""
    log = stack.root / "logs" / "zookeeper.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"Expiring session {session}" in log.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


def test_zookeeper_mode_up_after_a_sigkilled_broker(alt_stack: AltStack) -> None:
    """The dead broker's registration is removed; the new one outlives its session."""
    stdout, took = up_after_crash(alt_stack, "zookeeper")
    assert "zookeeper: already running" in stdout
    line = next(x for x in stdout.splitlines() if "crashed broker" in x)
    assert "removed the registration of a crashed broker (/brokers/ids/1" in line
    dead = line.rsplit("session ", 1)[1].rstrip(")")
    assert took < 60
    # When the dead session expires, ZooKeeper must not take the new broker's
    # registration with it.
    assert session_expired(alt_stack, dead, timeout=40), "the dead session lives on"
    with ZooKeeperClient(alt_stack.ports["zookeeper"]) as zk:
        node = zk.stat("/brokers/ids/1")
    assert node is not None and node.ephemeral_owner not in (0, int(dead, 16))
    small_roundtrip(alt_stack, "zk_crash")


def test_kraft_mode_up_after_a_sigkilled_node(alt_stack: AltStack) -> None:
    stdout, took = up_after_crash(alt_stack, "kraft")
    assert "stopped without `make down`" in stdout
    assert took < 60
    small_roundtrip(alt_stack, "kraft_crash")


def test_a_broker_that_cannot_start_is_one_line_naming_its_log(
    alt_stack: AltStack,
) -> None:
    alt_stack.env["KAFKA_HEAP_OPTS"] = "-Xmx1k"  # the JVM refuses to start
    out = alt_stack.run("up", "--mode", "kraft")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    log = alt_stack.root / "logs" / "kafka.out"
    assert lines[0].startswith("streamapp-stack: kafka exited during start-up; see ")
    assert str(log) in lines[0]
    assert "Traceback" not in out.stderr + out.stdout


def test_zookeeper_and_broker_both_sigkilled_come_back_on_one_up(
    alt_stack: AltStack,
) -> None:
    """A restarted ZooKeeper restores the dead session (and its nodes) from disk."""
    alt_stack.must("up", "--mode", "zookeeper")
    zk_pid = int((alt_stack.root / "run" / "zookeeper.pid").read_text())
    kill_broker(alt_stack)
    os.kill(zk_pid, signal.SIGKILL)
    again = alt_stack.run("up", "--mode", "zookeeper")
    assert again.returncode == 0, f"{again.stdout}{again.stderr}"
    assert "zookeeper: started" in again.stdout
    assert "removed the registration of a crashed broker" in again.stdout
    assert "kafka: started in zookeeper mode" in again.stdout
