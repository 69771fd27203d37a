"""The orchestration: ``up``, ``down``, ``status`` and ``purge`` of the whole stack.

ZooKeeper (zookeeper mode) is launched first; PostgreSQL starts while its JVM warms
up; the broker starts once ZooKeeper answers. Every service is awaited until it
answers; a failure is one line naming the service and its log file.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from devstack.jvm import ensure_jars, find_java
from devstack.kafka import MODES, Kafka
from devstack.paths import LOG4J, StackPaths, resolve_stack_dir
from devstack.postgres import Postgres
from devstack.process import Echo, port_free_or_fail, port_in_use, wait_until
from devstack.zookeeper import ZooKeeper
from streamapp.exceptions import ConfigError, StackError
from streamapp.settings import Settings

__all__ = ["DEFAULT_TIMEOUT", "Stack"]

DEFAULT_TIMEOUT = 120.0


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass
class _Run:
    """What one ``up`` found running (pids) and what it launched."""

    zookeeper: int | None
    kafka: int | None
    postgres: int | None
    zookeeper_proc: subprocess.Popen[bytes] | None = None
    started: bool = False


class Stack:
    """Start, stop and report the local ZooKeeper/KRaft, Kafka and PostgreSQL."""

    def __init__(
        self,
        settings: Settings,
        mode: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        echo: Echo | None = None,
    ) -> None:
        self.settings = settings
        self.mode = mode or settings.kafka_mode
        if self.mode not in MODES:
            raise ConfigError(
                f"KAFKA_MODE={self.mode!r} is not valid; use one of: {', '.join(MODES)}"
            )
        self.timeout = timeout
        self.paths = StackPaths(resolve_stack_dir(settings))
        self.echo: Echo = echo or _print
        self.zookeeper = ZooKeeper(self.paths, self.echo, timeout, settings)
        self.kafka = Kafka(self.paths, self.echo, timeout, settings, self.mode)
        self.postgres = Postgres(self.paths, self.echo, timeout, settings)
        self.kafka_port = self.kafka.port
        self.kafka_bootstrap = self.kafka.bootstrap

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        with (self.paths.root / "stack.lock").open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.echo(
                    "stack: waiting for another streamapp-stack run to finish ..."
                )
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ up
    def up(self) -> bool:
        """Start what is not running and wait until everything answers.

        Returns True when something was started, False when all was already up.
        """
        t0 = time.monotonic()
        java = self._preflight()
        with self._lock():
            self.paths.prepare()
            run = _Run(self.zookeeper.pid(), self.kafka.pid(), self.postgres.pid())
            self._refuse_conflicts(run)
            kafka_conf = self.kafka.render()
            self._launch_zookeeper(run, java)
            if run.kafka is None:
                self.kafka.prepare(java, kafka_conf)
            self._start_postgres(run)
            self._await_zookeeper(run, t0)
            self._start_kafka(run, java)
        if run.started:
            self.echo(
                f"stack: up in {self.mode} mode in {time.monotonic() - t0:.1f}s "
                f"(state in {self.paths.root})"
            )
        else:
            self.echo("stack: already up, nothing to do")
        return run.started

    def _preflight(self) -> str:
        """Every prerequisite, checked before anything is created; returns java."""
        java = find_java()
        ensure_jars()
        _ = self.postgres.bindir, self.postgres.prefix
        if not LOG4J.is_file():
            raise StackError(f"{LOG4J} is missing (it is part of the repository)")
        return java

    def _refuse_conflicts(self, run: _Run) -> None:
        """A broker of the other mode, or a port taken by a stranger: refuse."""
        if run.kafka is not None:
            running = self.kafka.running_mode(run.kafka)
            if running != self.mode:
                raise StackError(
                    f"kafka is running in {running} mode (pid {run.kafka}); "
                    f"run `make down` before switching to {self.mode} mode"
                )
        if self.mode == "zookeeper" and run.zookeeper is None:
            port_free_or_fail("zookeeper", self.zookeeper.port, "ZOOKEEPER_CLIENT_PORT")
        if run.kafka is None:
            port_free_or_fail("kafka", self.kafka.port, "KAFKA_ADVERTISED_LISTENERS")
            if self.mode == "kraft":
                port_free_or_fail(
                    "the kafka controller",
                    self.kafka.port + 1,
                    "KAFKA_ADVERTISED_LISTENERS port (controller = port + 1)",
                )
        if run.postgres is None:
            port_free_or_fail("postgres", self.postgres.port, "POSTGRES_PORT")

    def _launch_zookeeper(self, run: _Run, java: str) -> None:
        if self.mode != "zookeeper":
            return
        if run.zookeeper is None:
            run.zookeeper_proc = self.zookeeper.launch(java)
            run.started = True
        else:
            self.echo(
                f"zookeeper: already running (pid {run.zookeeper}, "
                f"port {self.zookeeper.port})"
            )

    def _start_postgres(self, run: _Run) -> None:
        pg, t0 = self.postgres, time.monotonic()
        if run.postgres is None:
            pg.start()
            run.started = True
        wait_until(
            "postgres",
            pg.answers,
            lambda: pg.pid() is not None,
            self.timeout,
            [pg.log()],
        )
        login_error = pg.login_error()
        if login_error:
            s = self.settings
            raise StackError(
                f"postgres answers but {s.postgres_user!r} cannot log in to "
                f"{s.postgres_db!r}: {login_error} (run `make down` then "
                "`make up` to apply changed POSTGRES_* settings)"
            )
        if run.postgres is None:
            self.echo(
                f"postgres: started (pid {pg.pid()}, port {pg.port}) "
                f"in {time.monotonic() - t0:.1f}s"
            )
        else:
            self.echo(f"postgres: already running (pid {pg.pid()}, port {pg.port})")

    def _await_zookeeper(self, run: _Run, t0: float) -> None:
        if self.mode != "zookeeper":
            return
        proc = run.zookeeper_proc
        self.zookeeper.wait(proc, self.zookeeper.answers)
        if proc is not None:
            self.echo(
                f"zookeeper: started (pid {proc.pid}, port {self.zookeeper.port}) "
                f"in {time.monotonic() - t0:.1f}s"
            )

    def _start_kafka(self, run: _Run, java: str) -> None:
        kafka, t0 = self.kafka, time.monotonic()
        proc: subprocess.Popen[bytes] | None = None
        if run.kafka is None:
            if self.mode == "zookeeper":
                # A killed broker's registration would make this one die (NodeExists).
                self.zookeeper.forget_crashed_broker()
            else:
                kafka.explain_crash_wait()
            proc = kafka.launch(java)
            run.started = True
        kafka.wait(proc, kafka.answers)
        if proc is not None:
            self.echo(
                f"kafka: started in {self.mode} mode (pid {proc.pid}, "
                f"port {kafka.port}) in {time.monotonic() - t0:.1f}s"
            )
        else:
            self.echo(
                f"kafka: already running in {self.mode} mode "
                f"(pid {run.kafka}, port {kafka.port})"
            )

    # ------------------------------------------------------------------ down
    def down(self) -> bool:
        """Stop what this stack started; returns True when something was stopped."""
        stopped = False
        with self._lock():
            for service in (self.kafka, self.zookeeper):  # the broker needs ZooKeeper
                stopped = service.stop() or stopped
            stopped = self.postgres.stop() or stopped
            busy = self._wait_ports_free()
        for service_name, port in busy:
            self.echo(
                f"{service_name}: port {port} is still listening, but not by a "
                "process this stack started"
            )
        if not stopped:
            self.echo("stack: nothing was running")
        return stopped

    def _ports(self) -> list[tuple[str, int]]:
        ports = [
            ("zookeeper", self.zookeeper.port),
            ("kafka", self.kafka.port),
            ("postgres", self.postgres.port),
        ]
        if self.mode == "kraft":
            ports.append(("kafka controller", self.kafka.port + 1))
        return ports

    def _wait_ports_free(self, timeout: float = 10.0) -> list[tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while True:
            busy = [(svc, port) for svc, port in self._ports() if port_in_use(port)]
            if not busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.2)

    # ------------------------------------------------------------------ status
    def _status_rows(self) -> tuple[str, list[tuple[str, int | None, int, bool, str]]]:
        """The mode that runs, and (name, pid, port, answers, note) per service."""
        kafka_pid = self.kafka.pid()
        mode = self.kafka.running_mode(kafka_pid) if kafka_pid else self.mode
        zk_pid = self.zookeeper.pid()
        rows: list[tuple[str, int | None, int, bool, str]] = []
        if mode == "zookeeper" or zk_pid is not None:
            zk_ok = zk_pid is not None and self.zookeeper.answers()
            rows.append(("zookeeper", zk_pid, self.zookeeper.port, zk_ok, ""))
        kafka_ok = kafka_pid is not None and self.kafka.answers()
        rows.append(("kafka", kafka_pid, self.kafka.port, kafka_ok, f"{mode} mode"))
        pg_pid = self.postgres.pid()
        pg_ok = False
        if pg_pid is not None:
            with contextlib.suppress(StackError):
                pg_ok = self.postgres.answers()
        rows.append(("postgres", pg_pid, self.postgres.port, pg_ok, ""))
        return mode, rows

    def status(self) -> bool:
        """Print what runs; True when every service of the mode runs and answers."""
        mode, rows = self._status_rows()
        self.echo(f"stack: {self.paths.root} ({mode} mode)")
        ok = True
        for name, pid, port, answers, note in rows:
            if pid is None:
                foreign = (
                    " (port taken by another process)" if port_in_use(port) else ""
                )
                self.echo(f"  {name:<10} stopped{foreign}  port {port}")
                ok = False
                continue
            state = "answering" if answers else "NOT answering"
            ok = ok and answers
            extra = f"  {note}" if note else ""
            self.echo(f"  {name:<10} running  pid {pid}  port {port}  {state}{extra}")
        return ok

    # ------------------------------------------------------------------ purge
    def purge(self) -> None:
        """Stop everything and delete the state dir (data, logs, configs)."""
        self.down()
        root = self.paths.root
        if self.paths.postgres.is_symlink():
            self.postgres.log().unlink(missing_ok=True)
            shutil.rmtree(self.postgres.data(), ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        self.echo(f"stack: removed {root}")
