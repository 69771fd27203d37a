"""The local stack: ZooKeeper or KRaft, a Kafka broker and PostgreSQL, no Docker."""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from streamapp.exceptions import ConfigError, StackError, StreamappError
from streamapp.settings import Settings, load_settings

__all__ = [
    "Listener",
    "Stack",
    "StackPaths",
    "as_postgres_prefix",
    "find_pg_bindir",
    "kafka_answers",
    "main",
    "parse_listeners",
    "pid_alive",
    "read_pid",
    "render_kafka_properties",
    "render_zookeeper_properties",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_SRC = REPO_ROOT / "stack"
LIB_DIR = STACK_SRC / "lib"
POM = STACK_SRC / "pom.xml"
LOG4J = STACK_SRC / "log4j.properties"
MODES = ("zookeeper", "kraft")
PG_OS_USER = "postgres"
PG_SEARCH_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql/bin",
)
PG_PREFERRED_MAJOR = "15"
PG_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_isready")
REQUIRED_JARS = ("kafka_2.13-*.jar", "zookeeper-*.jar", "slf4j-reload4j-*.jar")
ZOOKEEPER_HEAP = ("-Xms32m", "-Xmx256m")
JVM_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
DEFAULT_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
LOG_TAIL_LINES = 30
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "", "0.0.0.0")  # noqa: S104

log = logging.getLogger(__name__)


# ----------------------------------------------------------------- pure helpers
@dataclass(frozen=True)
class Listener:
    """One Kafka listener: ``NAME://host:port``."""

    name: str
    host: str
    port: int

    def url(self, host: str | None = None) -> str:
        h = self.host if host is None else host
        if ":" in h:
            h = f"[{h}]"
        return f"{self.name}://{h}:{self.port}"


def parse_listeners(
    spec: str, env: str = "KAFKA_ADVERTISED_LISTENERS"
) -> list[Listener]:
    """Parse ``NAME://host:port[,NAME://host:port]``; ConfigError when malformed."""
    hint = f"{env}={spec!r} is malformed; use NAME://host:port, e.g. PLAINTEXT://localhost:9092"
    out: list[Listener] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, rest = item.partition("://")
        host, colon, port = rest.rpartition(":")
        if (
            not sep
            or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name)
            or not colon
            or not port.isdigit()
            or not 1 <= int(port) <= 65535
        ):
            raise ConfigError(hint)
        out.append(Listener(name.upper(), host.strip("[]"), int(port)))
    if not out:
        raise ConfigError(hint)
    if len({li.name for li in out}) != len(out):
        raise ConfigError(f"{env}={spec!r} names a listener twice")
    return out


def client_listener(listeners: Sequence[Listener]) -> Listener:
    """The listener this machine's clients use: the first one on a loopback host."""
    for li in listeners:
        if li.host in LOOPBACK_HOSTS:
            return li
    return listeners[0]


def parse_protocol_map(spec: str) -> dict[str, str]:
    """Parse KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: ``NAME:PROTOCOL[,...]``."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, proto = item.partition(":")
        if not sep or not name or not proto:
            raise ConfigError(
                f"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP={spec!r} is malformed; "
                "use NAME:PROTOCOL[,NAME:PROTOCOL], e.g. PLAINTEXT:PLAINTEXT"
            )
        out[name.strip().upper()] = proto.strip().upper()
    return out


def parse_zookeeper_connect(spec: str) -> list[tuple[str, int]]:
    """Parse ``host:port[,host:port][/chroot]`` (KAFKA_ZOOKEEPER_CONNECT)."""
    hosts = spec.split("/", 1)[0]
    out: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ConfigError(
                f"KAFKA_ZOOKEEPER_CONNECT={spec!r} is malformed; use host:port, "
                "e.g. localhost:2181"
            )
        out.append((host, int(port)))
    return out


def controller_port(settings: Settings) -> int:
    """The KRaft controller port: the client listener port plus one."""
    return (
        client_listener(parse_listeners(settings.kafka_advertised_listeners)).port + 1
    )


def _bind_host(host: str) -> str:
    """Bind loopback names as given; any other advertised host binds every interface."""
    return host if host in LOOPBACK_HOSTS else ""


def _properties(items: Sequence[tuple[str, object]], title: str) -> str:
    lines = [
        f"# {title}",
        "# Generated by devstack from the settings; edits are lost.",
    ]
    lines += [f"{k}={v}" for k, v in items]
    return "\n".join(lines) + "\n"


def render_zookeeper_properties(settings: Settings, data_dir: Path) -> str:
    """zookeeper.properties for a standalone ZooKeeper on ZOOKEEPER_CLIENT_PORT."""
    return _properties(
        [
            ("dataDir", data_dir),
            ("clientPort", settings.zookeeper_client_port),
            ("clientPortAddress", "127.0.0.1"),
            ("tickTime", settings.zookeeper_tick_time),
            ("maxClientCnxns", 0),
            ("admin.enableServer", "false"),
            ("4lw.commands.whitelist", "ruok,srvr,stat,mntr"),
            ("autopurge.snapRetainCount", 3),
            ("autopurge.purgeInterval", 24),
        ],
        "ZooKeeper (standalone) for the streamapp local stack",
    )


def render_kafka_properties(settings: Settings, mode: str, log_dir: Path) -> str:
    """server.properties: one broker (zookeeper mode) or a combined KRaft node."""
    if mode not in MODES:
        raise ConfigError(
            f"KAFKA_MODE={mode!r} is not valid; use one of: {', '.join(MODES)}"
        )
    advertised = parse_listeners(settings.kafka_advertised_listeners)
    protocols = parse_protocol_map(settings.kafka_listener_security_protocol_map)
    for li in advertised:
        if li.name not in protocols:
            raise ConfigError(
                f"listener {li.name} of KAFKA_ADVERTISED_LISTENERS is missing from "
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
            )
        if li.name == "CONTROLLER":
            raise ConfigError(
                "KAFKA_ADVERTISED_LISTENERS must not advertise CONTROLLER"
            )
    client = client_listener(advertised)
    listeners = [li.url(_bind_host(li.host)) for li in advertised]
    items: list[tuple[str, object]] = []
    if mode == "zookeeper":
        zk_hosts = parse_zookeeper_connect(settings.kafka_zookeeper_connect)
        if not any(
            h in LOOPBACK_HOSTS and p == settings.zookeeper_client_port
            for h, p in zk_hosts
        ):
            raise ConfigError(
                f"KAFKA_ZOOKEEPER_CONNECT={settings.kafka_zookeeper_connect!r} "
                f"does not point at the local ZooKeeper (ZOOKEEPER_CLIENT_PORT="
                f"{settings.zookeeper_client_port}); e.g. "
                f"localhost:{settings.zookeeper_client_port}"
            )
        items += [
            ("broker.id", settings.kafka_broker_id),
            ("zookeeper.connect", settings.kafka_zookeeper_connect),
            ("zookeeper.connection.timeout.ms", 18000),
        ]
    else:
        protocols.setdefault("CONTROLLER", "PLAINTEXT")
        cport = client.port + 1
        chost = client.host or "localhost"
        cbind = Listener("CONTROLLER", _bind_host(chost), cport)
        listeners.append(cbind.url())
        voter = Listener("CONTROLLER", chost, cport).url().split("://", 1)[1]
        items += [
            ("process.roles", "broker,controller"),
            ("node.id", settings.kafka_broker_id),
            ("controller.quorum.voters", f"{settings.kafka_broker_id}@{voter}"),
            ("controller.listener.names", "CONTROLLER"),
        ]
    items += [
        ("listeners", ",".join(listeners)),
        ("advertised.listeners", ",".join(li.url() for li in advertised)),
        (
            "listener.security.protocol.map",
            ",".join(f"{k}:{v}" for k, v in protocols.items()),
        ),
        ("inter.broker.listener.name", client.name),
        ("log.dirs", log_dir),
        ("num.network.threads", 3),
        ("num.io.threads", 8),
        ("num.partitions", 1),
        ("default.replication.factor", 1),
        ("min.insync.replicas", 1),
        ("offsets.topic.replication.factor", 1),
        ("transaction.state.log.replication.factor", 1),
        ("transaction.state.log.min.isr", 1),
        ("auto.create.topics.enable", "true"),
        ("delete.topic.enable", "true"),
        ("group.initial.rebalance.delay.ms", 0),
        ("log.retention.hours", 168),
        ("log.retention.check.interval.ms", 300000),
    ]
    title = "Kafka broker (zookeeper mode)" if mode == "zookeeper" else "Kafka (KRaft)"
    return _properties(items, f"{title} for the streamapp local stack")


def render_postgres_conf(settings: Settings) -> str:
    """The settings the local PostgreSQL needs on top of initdb's defaults."""
    return (
        "# Generated by devstack from the settings; edits are lost.\n"
        f"port = {settings.postgres_port}\n"
        "listen_addresses = '127.0.0.1'\n"
        "unix_socket_directories = ''\n"
        "password_encryption = 'scram-sha-256'\n"
        "logging_collector = off\n"
        "log_line_prefix = '%m [%p] %q%u@%d '\n"
    )


PG_HBA = """\
# Generated by devstack: no socket, passwords (SCRAM) over loopback TCP only.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  peer
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_pg_bootstrap_sql(user: str, password: str, db: str) -> str:
    """SQL for ``postgres --single -j``: the app role and its database."""
    u, d = quote_ident(user), quote_ident(db)
    return (
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
        f"{quote_literal(user)}) THEN CREATE ROLE {u}; END IF; END$$;\n\n"
        f"ALTER ROLE {u} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        f"PASSWORD {quote_literal(password)};\n\n"
        f"CREATE DATABASE {d} OWNER {u};\n\n"
        f"ALTER DATABASE {d} OWNER TO {u};\n\n"
    )


def kraft_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, url-safe base64 without padding."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file ('' when missing)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------- prerequisites
def find_pg_bindir(
    path: str | None = None, globs: Sequence[str] = PG_SEARCH_GLOBS
) -> Path:
    """The PostgreSQL server bin dir: pg_config, then the usual places, then PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config", path=path)
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(  # noqa: S603
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    found: list[Path] = []
    for pattern in globs:
        found += [Path(p) for p in sorted(Path("/").glob(pattern.lstrip("/")))]

    def rank(p: Path) -> tuple[int, float]:
        m = re.search(r"(\d+)(?:\.\d+)?", str(p))
        major = m.group(1) if m else ""
        return (0 if major == PG_PREFERRED_MAJOR else 1, -float(major or 0))

    candidates += sorted(found, key=rank)
    initdb = shutil.which("initdb", path=path)
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for cand in candidates:
        if all(os.access(cand / tool, os.X_OK) for tool in PG_TOOLS):
            return cand
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
        "install PostgreSQL 15 (apt-get install postgresql-15)"
    )


def find_java(path: str | None = None) -> str:
    java = shutil.which("java", path=path)
    if not java:
        raise StackError(
            "java not found on PATH: install a Java 17 runtime "
            "(apt-get install openjdk-17-jre-headless)"
        )
    return java


def jars_present(lib_dir: Path = LIB_DIR) -> bool:
    return all(any(lib_dir.glob(pattern)) for pattern in REQUIRED_JARS)


def ensure_jars(
    path: str | None = None, lib_dir: Path = LIB_DIR, pom: Path = POM
) -> None:
    """Resolve the Kafka jars with Maven into stack/lib when they are missing."""
    if jars_present(lib_dir):
        return
    mvn = shutil.which("mvn", path=path)
    if not mvn:
        raise StackError(
            f"the Kafka jars are missing from {lib_dir} and mvn is not on PATH: "
            "install Maven (apt-get install maven)"
        )
    print(f"jars: resolving Kafka jars with Maven into {lib_dir} ...", flush=True)
    try:
        out = subprocess.run(  # noqa: S603
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise StackError(f"mvn could not run: {exc}") from exc
    if out.returncode != 0 or not jars_present(lib_dir):
        last = "\n".join((out.stdout + out.stderr).splitlines()[-LOG_TAIL_LINES:])
        raise StackError(
            f"mvn could not resolve the Kafka jars (exit {out.returncode}); "
            f"check network access to Maven Central\n{last}"
        )


def as_postgres_prefix(path: str | None = None) -> list[str]:
    """The command prefix that runs a PostgreSQL tool as the right OS user."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise StackError(
            f"running as root needs a '{PG_OS_USER}' OS user for PostgreSQL: "
            "install postgresql-15 (it creates one) or run as a normal user"
        ) from None
    runuser = shutil.which("runuser", path=path)
    if runuser:
        return [runuser, "-u", PG_OS_USER, "--"]
    setpriv = shutil.which("setpriv", path=path)
    if setpriv:
        return [
            setpriv,
            f"--reuid={PG_OS_USER}",
            f"--regid={PG_OS_USER}",
            "--init-groups",
            "--",
        ]
    raise StackError("running as root needs runuser or setpriv: install util-linux")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with (
        contextlib.suppress(OSError),
        socket.create_connection((host, port), timeout=1),
    ):
        return True
    return False


def zookeeper_answers(port: int, timeout: float = 2.0) -> bool:
    """ZooKeeper's ``ruok`` four-letter word answers ``imok``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"ruok")
            return sock.recv(16) == b"imok"
    except OSError:
        return False


def kafka_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """A metadata request succeeds and names at least one broker and a controller."""

    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout * 1000),
            client_id="streamapp-stack",
        )
        try:
            await asyncio.wait_for(admin.start(), timeout)
            info = await asyncio.wait_for(admin.describe_cluster(), timeout)
        finally:
            await admin.close()
        return bool(info.get("brokers")) and info.get("controller_id", -1) not in (
            -1,
            None,
        )

    def run() -> bool:
        try:
            return asyncio.run(probe())
        except Exception:  # any failure means "not answering yet"
            return False

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    # Called from inside an event loop (e.g. an async test): probe in a thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


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
    try:
        text = path.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------- stack
@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its state: configs, data, pid files and logs."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def postgres(self) -> Path:
        """The PostgreSQL data dir (maybe a symlink to a place postgres can reach)."""
        return self.root / "postgres"

    def kafka_conf(self, mode: str) -> Path:
        return self.conf / f"server-{mode}.properties"

    def kafka_data(self, mode: str) -> Path:
        return self.data / f"kafka-{mode}"

    def pid(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def out(self, name: str) -> Path:
        return self.logs / f"{name}.out"


def resolve_stack_dir(settings: Settings) -> Path:
    path = Path(settings.stack_dir).expanduser()
    return (path if path.is_absolute() else REPO_ROOT / path).resolve()


class Stack:
    """Start, stop and report the local ZooKeeper/KRaft, Kafka and PostgreSQL."""

    def __init__(
        self,
        settings: Settings,
        mode: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.mode = mode or settings.kafka_mode
        if self.mode not in MODES:
            raise ConfigError(
                f"KAFKA_MODE={self.mode!r} is not valid; use one of: {', '.join(MODES)}"
            )
        self.timeout = timeout
        self.paths = StackPaths(resolve_stack_dir(settings))
        self.echo = echo or (lambda line: print(line, flush=True))
        self.listener = client_listener(
            parse_listeners(settings.kafka_advertised_listeners)
        )
        self.kafka_port = self.listener.port
        self.kafka_bootstrap = f"{self.listener.host or 'localhost'}:{self.kafka_port}"
        if self.listener.host in ("", "0.0.0.0"):  # noqa: S104
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"

    # ------------------------------------------------------------ bookkeeping
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

    def _prepare_dirs(self) -> None:
        for d in (self.paths.root, self.paths.conf, self.paths.data, self.paths.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.paths.root.chmod(0o755)

    def _java_pid(self, name: str) -> int | None:
        """The pid of our ZooKeeper/Kafka (its command line names our conf dir)."""
        pid = read_pid(self.paths.pid(name))
        if pid is not None and pid_alive(pid, str(self.paths.conf) + os.sep):
            return pid
        return None

    def _kafka_running_mode(self, pid: int) -> str:
        cmdline = Path(f"/proc/{pid}/cmdline")
        with contextlib.suppress(OSError):
            text = cmdline.read_bytes().decode("utf-8", "replace")
            for mode in MODES:
                if str(self.paths.kafka_conf(mode)) in text:
                    return mode
        return self.mode

    def _pg_data(self) -> Path:
        return self.paths.postgres.resolve()

    def _pg_log(self) -> Path:
        """PostgreSQL's log: logs/postgres.log, or next to an outside data dir."""
        if self.paths.postgres.is_symlink():
            data = self._pg_data()
            return data.parent / f"{data.name}.log"
        return self.paths.log("postgres")

    def _pg_pid(self) -> int | None:
        data = self._pg_data()
        pid = read_pid(data / "postmaster.pid") if data.is_dir() else None
        if pid is None:
            with contextlib.suppress(PermissionError):
                pid = read_pid(data / "postmaster.pid")
        if pid is not None and pid_alive(pid, str(data)):
            return pid
        return None

    def _fail(self, what: str, *logs: Path) -> StackError:
        parts = [what]
        for path in logs:
            text = tail(path)
            if text.strip():
                parts.append(f"--- last {LOG_TAIL_LINES} lines of {path} ---\n{text}")
        return StackError("\n".join(parts))

    def _port_free_or_fail(self, service: str, port: int, setting: str) -> None:
        if port_in_use(port):
            raise StackError(
                f"port {port} for {service} is already in use by another process: "
                f"stop it (see `ss -ltnp 'sport = :{port}'`) "
                f"or choose another {setting}"
            )

    # ------------------------------------------------------------ java services
    def _spawn_java(
        self, name: str, java: str, heap: Sequence[str], args: Sequence[str]
    ) -> subprocess.Popen[bytes]:
        cmd = [
            java,
            *heap,
            *JVM_OPTS,
            f"-Dlog4j.configuration={LOG4J.as_uri()}",
            f"-Dstreamapp.log.file={self.paths.log(name)}",
            "-cp",
            f"{LIB_DIR}{os.sep}*",
            *args,
        ]
        out: IO[bytes]
        with self.paths.out(name).open("ab") as out:
            out.write(
                f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(  # noqa: S603
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.paths.root,
                start_new_session=True,
                close_fds=True,
            )
        self.paths.pid(name).write_text(f"{proc.pid}\n")
        return proc

    def _wait(
        self,
        name: str,
        answers: Callable[[], bool],
        alive: Callable[[], bool],
        logs: Sequence[Path],
    ) -> None:
        deadline = time.monotonic() + self.timeout
        while not answers():
            if not alive():
                raise self._fail(f"{name} exited during start-up", *logs)
            if time.monotonic() > deadline:
                raise self._fail(
                    f"{name} did not answer within {self.timeout:.0f}s", *logs
                )
            time.sleep(0.25)

    def _terminate(self, name: str, pid: int, marker: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid_alive(pid, marker):
            if time.monotonic() > deadline:
                self.echo(
                    f"{name}: still running after {STOP_TIMEOUT:.0f}s, sending SIGKILL"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
                break
            time.sleep(0.2)
        # Reap it when it is our child (a failed start in this very run).
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)

    # ------------------------------------------------------------ postgres
    def _pg_reachable(self, prefix: list[str], path: Path) -> bool:
        if not prefix:
            return True
        probe = subprocess.run(  # noqa: S603
            [*prefix, "test", "-x", str(path)], capture_output=True, cwd="/"
        )
        return probe.returncode == 0

    def _pg_init(self, bindir: Path, prefix: list[str]) -> None:
        link = self.paths.postgres
        if link.is_symlink() or link.exists():
            data = link.resolve()
        elif self._pg_reachable(prefix, self.paths.root):
            data = link
        else:
            digest = hashlib.sha256(str(self.paths.root).encode()).hexdigest()[:12]
            outside = Path("/var/tmp/streamapp-stack")  # noqa: S108
            outside.mkdir(mode=0o711, exist_ok=True)
            data = outside / digest
            self.echo(
                f"postgres: {self.paths.root} is not reachable by {PG_OS_USER}; "
                f"keeping the data dir in {data} (linked from {link})"
            )
            link.symlink_to(data)
            self.paths.log("postgres").unlink(missing_ok=True)
            self.paths.log("postgres").symlink_to(self._pg_log())
        data.mkdir(mode=0o700, exist_ok=True)
        data.chmod(0o700)
        if prefix:
            shutil.chown(data, PG_OS_USER, PG_OS_USER)
        if (data / "PG_VERSION").exists():
            return
        self.echo(f"postgres: initdb {data}")
        out = subprocess.run(  # noqa: S603
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
            ],
            capture_output=True,
            text=True,
            cwd="/",
        )
        if out.returncode != 0:
            last = "\n".join((out.stdout + out.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise StackError(f"postgres: initdb failed (exit {out.returncode})\n{last}")
        with (data / "postgresql.conf").open("a") as fh:
            fh.write("\ninclude_if_exists = 'streamapp.conf'\n")

    def _write_pg_file(self, path: Path, text: str, prefix: list[str]) -> None:
        path.write_text(text)
        path.chmod(0o600)
        if prefix:
            shutil.chown(path, PG_OS_USER, PG_OS_USER)

    def _pg_bootstrap(self, bindir: Path, prefix: list[str]) -> None:
        """Create/update the app role and database (server stopped: single-user)."""
        s = self.settings
        password = s.postgres_password.get_secret_value()
        marker_path = self.paths.run / "postgres-bootstrap.json"
        salt = "streamapp-stack"
        wanted = {
            "user": s.postgres_user,
            "db": s.postgres_db,
            "password_sha256": hashlib.sha256((salt + password).encode()).hexdigest(),
        }
        with contextlib.suppress(OSError, ValueError):
            if json.loads(marker_path.read_text()) == wanted:
                return
        if s.postgres_user == PG_OS_USER:
            raise StackError(
                f"POSTGRES_USER must not be {PG_OS_USER!r} (the superuser)"
            )
        out = subprocess.run(  # noqa: S603
            [
                *prefix,
                str(bindir / "postgres"),
                "--single",
                "-j",
                "-D",
                str(self._pg_data()),
                "postgres",
            ],
            input=render_pg_bootstrap_sql(s.postgres_user, password, s.postgres_db),
            capture_output=True,
            text=True,
            cwd="/",
        )
        errors = [
            line
            for line in out.stderr.splitlines()
            if "ERROR:" in line and "already exists" not in line
        ]
        if out.returncode != 0 or errors:
            detail = "\n".join(errors or out.stderr.splitlines()[-LOG_TAIL_LINES:])
            raise StackError(f"postgres: creating role/database failed\n{detail}")
        marker_path.write_text(json.dumps(wanted))
        marker_path.chmod(0o600)

    def _pg_answers(self, bindir: Path) -> bool:
        out = subprocess.run(  # noqa: S603
            [
                str(bindir / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.settings.postgres_port),
                "-t",
                "2",
            ],
            capture_output=True,
            cwd="/",
        )
        return out.returncode == 0

    def _pg_login_error(self) -> str | None:
        """None when the configured user logs in with the configured password."""
        import psycopg2

        s = self.settings
        try:
            conn = psycopg2.connect(
                host="127.0.0.1",
                port=s.postgres_port,
                user=s.postgres_user,
                password=s.postgres_password.get_secret_value(),
                dbname=s.postgres_db,
                connect_timeout=5,
            )
        except psycopg2.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        conn.close()
        return None

    def _pg_start(self, bindir: Path, prefix: list[str]) -> None:
        self._pg_init(bindir, prefix)
        data = self._pg_data()
        self._write_pg_file(
            data / "streamapp.conf", render_postgres_conf(self.settings), prefix
        )
        self._write_pg_file(data / "pg_hba.conf", PG_HBA, prefix)
        self._pg_bootstrap(bindir, prefix)
        logfile = self._pg_log()
        logfile.touch()
        if prefix:
            shutil.chown(logfile, PG_OS_USER, PG_OS_USER)
        out = subprocess.run(  # noqa: S603
            [
                *prefix,
                str(bindir / "pg_ctl"),
                "start",
                "-D",
                str(data),
                "-l",
                str(logfile),
                "-w",
                "-t",
                str(int(self.timeout)),
                "-s",
            ],
            capture_output=True,
            text=True,
            cwd="/",
        )
        if out.returncode != 0:
            raise self._fail(
                f"postgres: pg_ctl start failed (exit {out.returncode}) "
                f"{out.stderr.strip()}",
                logfile,
            )

    # ------------------------------------------------------------ commands
    def up(self) -> bool:
        """Start what is not running and wait until everything answers.

        Returns True when something was started, False when all was already up.
        """
        t0 = time.monotonic()
        java = find_java()
        ensure_jars()
        bindir = find_pg_bindir()
        prefix = as_postgres_prefix()
        if not LOG4J.is_file():
            raise StackError(f"{LOG4J} is missing (it is part of the repository)")
        started = False
        with self._lock():
            self._prepare_dirs()
            s = self.settings
            zk_port = s.zookeeper_client_port
            zk_pid = self._java_pid("zookeeper")
            kafka_pid = self._java_pid("kafka")
            pg_pid = self._pg_pid()
            if kafka_pid is not None:
                running = self._kafka_running_mode(kafka_pid)
                if running != self.mode:
                    raise StackError(
                        f"kafka is running in {running} mode (pid {kafka_pid}); "
                        f"run `make down` before switching to {self.mode} mode"
                    )
            # Refuse before starting anything when a port is taken by a stranger.
            if self.mode == "zookeeper" and zk_pid is None:
                self._port_free_or_fail("zookeeper", zk_port, "ZOOKEEPER_CLIENT_PORT")
            if kafka_pid is None:
                self._port_free_or_fail(
                    "kafka", self.kafka_port, "KAFKA_ADVERTISED_LISTENERS"
                )
                if self.mode == "kraft":
                    self._port_free_or_fail(
                        "the kafka controller",
                        self.kafka_port + 1,
                        "KAFKA_ADVERTISED_LISTENERS port (controller = port + 1)",
                    )
            if pg_pid is None:
                self._port_free_or_fail("postgres", s.postgres_port, "POSTGRES_PORT")
            kafka_conf = render_kafka_properties(
                s, self.mode, self.paths.kafka_data(self.mode)
            )

            # 1. ZooKeeper (or the KRaft storage format): launched, not awaited yet.
            zk_proc: subprocess.Popen[bytes] | None = None
            if self.mode == "zookeeper":
                if zk_pid is None:
                    conf = self.paths.conf / "zookeeper.properties"
                    zk_data = self.paths.data / "zookeeper"
                    zk_data.mkdir(parents=True, exist_ok=True)
                    conf.write_text(render_zookeeper_properties(s, zk_data))
                    zk_proc = self._spawn_java(
                        "zookeeper",
                        java,
                        ZOOKEEPER_HEAP,
                        [
                            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                            str(conf),
                        ],
                    )
                    started = True
                else:
                    self.echo(
                        f"zookeeper: already running (pid {zk_pid}, port {zk_port})"
                    )
            if kafka_pid is None:
                self.paths.kafka_conf(self.mode).write_text(kafka_conf)
                if self.mode == "kraft":
                    self._kraft_format(java)

            # 2. PostgreSQL, while the JVM warms up.
            t_pg = time.monotonic()
            if pg_pid is None:
                self._pg_start(bindir, prefix)
                started = True
            self._wait(
                "postgres",
                lambda: self._pg_answers(bindir),
                lambda: self._pg_pid() is not None,
                [self._pg_log()],
            )
            login_error = self._pg_login_error()
            if login_error:
                raise StackError(
                    f"postgres answers but {s.postgres_user!r} cannot log in to "
                    f"{s.postgres_db!r}: {login_error} (run `make down` then "
                    "`make up` to apply changed POSTGRES_* settings)"
                )
            pid = self._pg_pid()
            if pg_pid is None:
                self.echo(
                    f"postgres: started (pid {pid}, port {s.postgres_port}) "
                    f"in {time.monotonic() - t_pg:.1f}s"
                )
            else:
                self.echo(
                    f"postgres: already running (pid {pid}, port {s.postgres_port})"
                )

            # 3. ZooKeeper answers, then the broker.
            if self.mode == "zookeeper":
                self._wait_java(
                    "zookeeper", zk_proc, lambda: zookeeper_answers(zk_port)
                )
                if zk_proc is not None:
                    self.echo(
                        f"zookeeper: started (pid {zk_proc.pid}, port {zk_port}) "
                        f"in {time.monotonic() - t0:.1f}s"
                    )
            t_kafka = time.monotonic()
            kafka_proc: subprocess.Popen[bytes] | None = None
            if kafka_pid is None:
                kafka_proc = self._spawn_java(
                    "kafka",
                    java,
                    shlex_split(s.kafka_heap_opts),
                    ["kafka.Kafka", str(self.paths.kafka_conf(self.mode))],
                )
                started = True
            self._wait_java(
                "kafka", kafka_proc, lambda: kafka_answers(self.kafka_bootstrap)
            )
            if kafka_proc is not None:
                self.echo(
                    f"kafka: started in {self.mode} mode (pid {kafka_proc.pid}, "
                    f"port {self.kafka_port}) in {time.monotonic() - t_kafka:.1f}s"
                )
            else:
                self.echo(
                    f"kafka: already running in {self.mode} mode "
                    f"(pid {kafka_pid}, port {self.kafka_port})"
                )
        if started:
            self.echo(
                f"stack: up in {self.mode} mode in {time.monotonic() - t0:.1f}s "
                f"(state in {self.paths.root})"
            )
        else:
            self.echo("stack: already up, nothing to do")
        return started

    def _wait_java(
        self,
        name: str,
        proc: subprocess.Popen[bytes] | None,
        answers: Callable[[], bool],
    ) -> None:
        def alive() -> bool:
            if proc is not None:
                return proc.poll() is None
            return self._java_pid(name) is not None

        try:
            self._wait(
                name, answers, alive, [self.paths.log(name), self.paths.out(name)]
            )
        except StackError:
            if proc is not None and proc.poll() is None:
                self._terminate(name, proc.pid, str(self.paths.conf) + os.sep)
            with contextlib.suppress(OSError):
                self.paths.pid(name).unlink()
            raise

    def _kraft_format(self, java: str) -> None:
        data = self.paths.kafka_data("kraft")
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = kraft_cluster_id()
        self.echo(f"kafka: formatting KRaft storage (cluster id {cluster_id})")
        cmd = [
            java,
            "-Xmx256m",
            f"-Dlog4j.configuration={LOG4J.as_uri()}",
            f"-Dstreamapp.log.file={self.paths.log('kafka-storage')}",
            "-cp",
            f"{LIB_DIR}{os.sep}*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.paths.kafka_conf("kraft")),
            "--ignore-formatted",
        ]
        out = subprocess.run(  # noqa: S603
            cmd,
            capture_output=True,
            text=True,
            cwd=self.paths.root,
            timeout=self.timeout,
        )
        if out.returncode != 0:
            last = "\n".join((out.stdout + out.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise StackError(
                f"kafka: StorageTool format failed (exit {out.returncode})\n{last}"
            )

    def down(self) -> bool:
        """Stop what this stack started; returns True when something was stopped."""
        stopped = False
        with self._lock():
            marker = str(self.paths.conf) + os.sep
            for name in ("kafka", "zookeeper"):  # the broker first: it needs ZooKeeper
                pid = self._java_pid(name)
                if pid is not None:
                    t0 = time.monotonic()
                    self._terminate(name, pid, marker)
                    self.echo(
                        f"{name}: stopped (pid {pid}) in {time.monotonic() - t0:.1f}s"
                    )
                    stopped = True
                with contextlib.suppress(OSError):
                    self.paths.pid(name).unlink()
            pid = self._pg_pid()
            if pid is not None:
                t0 = time.monotonic()
                bindir = find_pg_bindir()
                prefix = as_postgres_prefix()
                out = subprocess.run(  # noqa: S603
                    [
                        *prefix,
                        str(bindir / "pg_ctl"),
                        "stop",
                        "-D",
                        str(self._pg_data()),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(int(STOP_TIMEOUT)),
                        "-s",
                    ],
                    capture_output=True,
                    text=True,
                    cwd="/",
                )
                if out.returncode != 0 and self._pg_pid() is not None:
                    self._terminate("postgres", pid, str(self._pg_data()))
                self.echo(
                    f"postgres: stopped (pid {pid}) in {time.monotonic() - t0:.1f}s"
                )
                stopped = True
            busy = self._wait_ports_free()
        for service, port in busy:
            self.echo(
                f"{service}: port {port} is still listening, but not by a process this "
                "stack started"
            )
        if not stopped:
            self.echo("stack: nothing was running")
        return stopped

    def _ports(self) -> list[tuple[str, int]]:
        s = self.settings
        ports = [
            ("zookeeper", s.zookeeper_client_port),
            ("kafka", self.kafka_port),
            ("postgres", s.postgres_port),
        ]
        if self.mode == "kraft":
            ports.append(("kafka controller", self.kafka_port + 1))
        return ports

    def _wait_ports_free(self, timeout: float = 10.0) -> list[tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while True:
            busy = [(svc, port) for svc, port in self._ports() if port_in_use(port)]
            if not busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.2)

    def status(self) -> bool:
        """Print what runs; True when every service of the mode runs and answers."""
        s = self.settings
        rows: list[tuple[str, int | None, int, bool, str]] = []
        kafka_pid = self._java_pid("kafka")
        mode = self._kafka_running_mode(kafka_pid) if kafka_pid else self.mode
        zk_pid = self._java_pid("zookeeper")
        if mode == "zookeeper" or zk_pid is not None:
            rows.append(
                (
                    "zookeeper",
                    zk_pid,
                    s.zookeeper_client_port,
                    zk_pid is not None and zookeeper_answers(s.zookeeper_client_port),
                    "",
                )
            )
        rows.append(
            (
                "kafka",
                kafka_pid,
                self.kafka_port,
                kafka_pid is not None and kafka_answers(self.kafka_bootstrap),
                f"{mode} mode",
            )
        )
        pg_pid = self._pg_pid()
        pg_ok = False
        if pg_pid is not None:
            with contextlib.suppress(StackError):
                pg_ok = self._pg_answers(find_pg_bindir())
        rows.append(("postgres", pg_pid, s.postgres_port, pg_ok, ""))
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

    def purge(self) -> None:
        """Stop everything and delete the state dir (data, logs, configs)."""
        self.down()
        root = self.paths.root
        if self.paths.postgres.is_symlink():
            self._pg_log().unlink(missing_ok=True)
            shutil.rmtree(self._pg_data(), ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        self.echo(f"stack: removed {root}")


def shlex_split(value: str) -> list[str]:
    import shlex

    return shlex.split(value)


# ------------------------------------------------------------------------- cli
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamapp-stack",
        description="The local Kafka (ZooKeeper or KRaft) + PostgreSQL stack.",
    )
    parser.add_argument("command", choices=("up", "down", "status", "purge"))
    parser.add_argument(
        "--mode", choices=MODES, default=None, help="override KAFKA_MODE for this run"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for each service (default {DEFAULT_TIMEOUT:.0f})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``streamapp-stack up|down|status|purge [--mode zookeeper|kraft]``."""
    args = build_parser().parse_args(argv)
    logging.getLogger("aiokafka").setLevel(
        logging.CRITICAL
    )  # probes fail while starting
    try:
        stack = Stack(load_settings(), mode=args.mode, timeout=args.timeout)
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down()
        elif args.command == "purge":
            stack.purge()
        else:
            return 0 if stack.status() else 3
    except StreamappError as exc:
        print(f"streamapp-stack: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("streamapp-stack: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
