"""The Kafka broker: listeners, server.properties, KRaft storage, the answer probe."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import re
import shlex
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.jvm import JavaService, java_classpath, render_properties
from devstack.paths import StackPaths
from devstack.process import Echo, failure, read_pid
from devstack.zookeeper import parse_zookeeper_connect
from streamapp.exceptions import ConfigError
from streamapp.settings import Settings

__all__ = [
    "MODES",
    "Kafka",
    "Listener",
    "client_listener",
    "controller_port",
    "kafka_answers",
    "kraft_cluster_id",
    "parse_listeners",
    "parse_protocol_map",
    "render_kafka_properties",
]

MODES = ("zookeeper", "kraft")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "", "0.0.0.0")  # noqa: S104


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


def controller_port(settings: Settings) -> int:
    """The KRaft controller port: the client listener port plus one."""
    return (
        client_listener(parse_listeners(settings.kafka_advertised_listeners)).port + 1
    )


def _bind_host(host: str) -> str:
    """Bind loopback names as given; any other advertised host binds every interface."""
    return host if host in LOOPBACK_HOSTS else ""


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(
            f"KAFKA_MODE={mode!r} is not valid; use one of: {', '.join(MODES)}"
        )


def _checked_listeners(settings: Settings) -> tuple[list[Listener], dict[str, str]]:
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
    return advertised, protocols


def _zookeeper_items(settings: Settings) -> list[tuple[str, object]]:
    zk_hosts = parse_zookeeper_connect(settings.kafka_zookeeper_connect)
    if not any(
        h in LOOPBACK_HOSTS and p == settings.zookeeper_client_port for h, p in zk_hosts
    ):
        raise ConfigError(
            f"KAFKA_ZOOKEEPER_CONNECT={settings.kafka_zookeeper_connect!r} "
            f"does not point at the local ZooKeeper (ZOOKEEPER_CLIENT_PORT="
            f"{settings.zookeeper_client_port}); e.g. "
            f"localhost:{settings.zookeeper_client_port}"
        )
    return [
        ("broker.id", settings.kafka_broker_id),
        ("zookeeper.connect", settings.kafka_zookeeper_connect),
        ("zookeeper.connection.timeout.ms", 18000),
    ]


def _kraft_items(
    settings: Settings, client: Listener, protocols: dict[str, str]
) -> tuple[list[tuple[str, object]], Listener]:
    """The combined node's settings and its controller listener (port + 1)."""
    protocols.setdefault("CONTROLLER", "PLAINTEXT")
    chost = client.host or "localhost"
    cport = client.port + 1
    voter = Listener("CONTROLLER", chost, cport).url().split("://", 1)[1]
    items: list[tuple[str, object]] = [
        ("process.roles", "broker,controller"),
        ("node.id", settings.kafka_broker_id),
        ("controller.quorum.voters", f"{settings.kafka_broker_id}@{voter}"),
        ("controller.listener.names", "CONTROLLER"),
    ]
    return items, Listener("CONTROLLER", _bind_host(chost), cport)


SINGLE_BROKER_ITEMS: tuple[tuple[str, object], ...] = (
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
)


def render_kafka_properties(settings: Settings, mode: str, log_dir: Path) -> str:
    """server.properties: one broker (zookeeper mode) or a combined KRaft node."""
    _check_mode(mode)
    advertised, protocols = _checked_listeners(settings)
    client = client_listener(advertised)
    listeners = [li.url(_bind_host(li.host)) for li in advertised]
    if mode == "zookeeper":
        items = _zookeeper_items(settings)
    else:
        items, controller = _kraft_items(settings, client, protocols)
        listeners.append(controller.url())
    items += [
        ("listeners", ",".join(listeners)),
        ("advertised.listeners", ",".join(li.url() for li in advertised)),
        (
            "listener.security.protocol.map",
            ",".join(f"{k}:{v}" for k, v in protocols.items()),
        ),
        ("inter.broker.listener.name", client.name),
        ("log.dirs", log_dir),
        *SINGLE_BROKER_ITEMS,
    ]
    title = "Kafka broker (zookeeper mode)" if mode == "zookeeper" else "Kafka (KRaft)"
    return render_properties(items, f"{title} for the streamapp local stack")


def kraft_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, url-safe base64 without padding."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


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
        controller = info.get("controller_id", -1)
        return bool(info.get("brokers")) and controller not in (-1, None)

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


class Kafka(JavaService):
    """The broker (zookeeper mode) or the combined broker+controller node (kraft)."""

    name = "kafka"

    def __init__(
        self,
        paths: StackPaths,
        echo: Echo,
        timeout: float,
        settings: Settings,
        mode: str,
    ) -> None:
        super().__init__(paths, echo, timeout)
        _check_mode(mode)
        self.settings = settings
        self.mode = mode
        self.listener = client_listener(
            parse_listeners(settings.kafka_advertised_listeners)
        )
        self.port = self.listener.port
        host = self.listener.host
        if host in ("", "0.0.0.0"):  # noqa: S104
            host = "127.0.0.1"
        self.bootstrap = f"{host or 'localhost'}:{self.port}"

    @property
    def conf(self) -> Path:
        return self.paths.kafka_conf(self.mode)

    def answers(self) -> bool:
        return kafka_answers(self.bootstrap)

    def running_mode(self, pid: int) -> str:
        """The mode of the running broker ``pid`` (the conf file it was given)."""
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
            for mode in MODES:
                if str(self.paths.kafka_conf(mode)) in text:
                    return mode
        return self.mode

    def render(self) -> str:
        return render_kafka_properties(
            self.settings, self.mode, self.paths.kafka_data(self.mode)
        )

    def prepare(self, java: str, conf: str) -> None:
        """Write server.properties; format the KRaft storage on first use."""
        self.conf.write_text(conf)
        if self.mode == "kraft":
            self._kraft_format(java)

    def explain_crash_wait(self) -> None:
        """Say why a KRaft node that died without ``down`` takes longer to start.

        Its pid file is still there (``down`` and a failed start remove it). The
        restarted controller keeps the dead node's registration for
        ``broker.session.timeout.ms`` (Kafka's default 9 s) and refuses the new one
        until then; the node retries by itself.
        """
        dead = read_pid(self.paths.pid(self.name))
        if dead is not None:
            self.echo(
                f"kafka: the last node (pid {dead}) stopped without `make down`; "
                "it registers again once its 9 s broker session has expired"
            )

    def launch(self, java: str) -> subprocess.Popen[bytes]:
        heap = shlex.split(self.settings.kafka_heap_opts)
        return self.spawn(java, heap, ["kafka.Kafka", str(self.conf)])

    def _kraft_format(self, java: str) -> None:
        data = self.paths.kafka_data("kraft")
        if (data / "meta.properties").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = kraft_cluster_id()
        self.echo(f"kafka: formatting KRaft storage (cluster id {cluster_id})")
        log = self.paths.log("kafka-storage")
        cmd = [java, "-Xmx256m", *java_classpath(log), "kafka.tools.StorageTool"]
        cmd += ["format", "-t", cluster_id, "-c", str(self.conf), "--ignore-formatted"]
        out = self.paths.out("kafka-storage")
        with out.open("ab") as fh:
            code = subprocess.run(  # noqa: S603
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.paths.root,
                timeout=self.timeout,
            ).returncode
        if code != 0:
            raise failure(f"kafka: StorageTool format failed (exit {code})", [out, log])
