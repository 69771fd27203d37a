"""Static checks of the Docker files: compose schema, hadolint, the seed's contract."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamapp import entrypoint
from streamapp.settings import APP_MODES, Secret, Settings, load_settings, read_env_file

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_KRAFT = ROOT / "docker-compose.kraft.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_FILES = [COMPOSE, COMPOSE_KRAFT]
#: Three KRaft brokers (replication factor 3): checked on its own below.
COMPOSE_CLUSTER = ROOT / "docker-compose.cluster.yml"
#: The stand-in overrides (CI, no registry): base file -> override.
STANDIN_OVERRIDES = {
    COMPOSE: ROOT / "docker-compose.standins.yml",
    COMPOSE_KRAFT: ROOT / "docker-compose.kraft.standins.yml",
    COMPOSE_CLUSTER: ROOT / "docker-compose.cluster.standins.yml",
}
#: Compose-only variables: the host ports (the defaults are the documented ports).
HOST_PORTS = {
    "HOST_PORT_KAFKA": "9092",
    "HOST_PORT_KAFKA_2": "9094",
    "HOST_PORT_KAFKA_3": "9095",
    "HOST_PORT_POSTGRES": "5320",
    "HOST_PORT_WEB": "6066",
    "HOST_PORT_WEB_LAST": "6068",
    "HOST_PORT_JUPYTER": "8888",
    "HOST_PORT_KAFKA_UI": "8080",
}

#: Settings only the local stack (make up) and the broker containers use, not the app.
STACK_ONLY = {
    "kafka_mode",
    "zookeeper_client_port",
    "zookeeper_tick_time",
    "kafka_broker_id",
    "kafka_zookeeper_connect",
    "kafka_advertised_listeners",
    "kafka_listener_security_protocol_map",
    "kafka_heap_opts",
    "stack_dir",
}
#: What the app containers must get, whatever .env says (the in-network addresses).
CONTAINER_VALUES = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:29092",
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "POSTGRES_HOST": "postgres",
    "POSTGRES_PORT": "5432",
    "WEB_PORT": "6066",
    "TOPIC_REPLICATION_FACTOR": "1",
}
#: Every setting typed as a secret (never written into a compose file).
SECRETS = tuple(
    f.name.upper() for f in dataclasses.fields(Settings) if f.type in (Secret, "Secret")
)
_VAR = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def tool(name: str) -> str:
    """A console script of this venv (or PATH); the test fails if it is missing."""
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.is_file() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[dev]')"
    return found


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        missing = current is None or (current == "" and op and op.startswith(":"))
        if op in (":?", "?") and missing:
            raise LookupError(f"{name}: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return current or ""

    return _VAR.sub(one, value)


def variables(value: str) -> list[tuple[str, str | None]]:
    """The ``(name, operator)`` of every interpolation in ``value``."""
    return [
        (m.group("name") or m.group("bare"), m.group("op"))
        for m in _VAR.finditer(value)
        if m.group(0) != "$$"
    ]


def all_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in all_strings(k) + all_strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in all_strings(item)]
    return [node] if isinstance(node, str) else []


def env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "use the mapping form of environment"
    return {str(k): str(v) for k, v in environment.items()}


def container_env(service: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets, with .env.example as the .env file."""
    dotenv = read_env_file(ENV_EXAMPLE)
    # the user must set the password; any value proves it is interpolated
    dotenv["POSTGRES_PASSWORD"] = dotenv.get("POSTGRES_PASSWORD") or "from-dot-env"
    return {k: interpolate(v, dotenv) for k, v in env_of(service).items()}


def ports_of(service: dict[str, Any]) -> list[str]:
    """The published ports with the host-port variables at their defaults."""
    return [interpolate(str(p), {}) for p in service.get("ports", [])]


def settings_fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(Settings)}


# ------------------------------------------------------------------ schema, lint


@pytest.mark.parametrize(
    "path",
    [*COMPOSE_FILES, COMPOSE_CLUSTER, *STANDIN_OVERRIDES.values()],
    ids=lambda p: p.name,
)
def test_compose_file_is_valid_compose_specification(path: Path) -> None:
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  app:\n    image: x\n    restart: 5\n    nope: 1\n")
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", broken],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nope" in result.stdout


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_has_no_version_key(path: Path) -> None:
    assert "version" not in load(path)


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "warning", DOCKERFILE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_contract() -> None:
    steps = dockerfile_instructions()
    keywords = [k for k, _ in steps]
    # multi-stage: a build stage and the final stage, both on PYTHON_IMAGE
    stages = [rest for k, rest in steps if k == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"], stages
    (default,) = [rest for k, rest in steps if k == "ARG" and "PYTHON_IMAGE" in rest]
    base = default.partition("=")[2]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base), base
    # the final stage gets only the venv of the build stage
    final = steps[keywords.index("FROM", keywords.index("FROM") + 1) :]
    assert not any(k == "RUN" and "pip install" in r for k, r in final)
    assert ("COPY", "--from=build /opt/venv /opt/venv") in final
    assert "EXPOSE" in keywords
    exposed = {p for k, rest in steps if k == "EXPOSE" for p in rest.split()}
    assert {"6066", "8888"} <= exposed
    assert [rest for k, rest in steps if k == "ENTRYPOINT"] == [
        '["streamapp-entrypoint"]'
    ]
    (check,) = [rest for k, rest in steps if k == "HEALTHCHECK"]
    assert '["streamapp-entrypoint", "--healthcheck"]' in check
    # the healthcheck and the entrypoint are this package's console script
    cfg = ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert "streamapp-entrypoint = streamapp.entrypoint:main" in scripts
    # the flag the HEALTHCHECK uses exists
    entrypoint._parse_args(["--healthcheck"])  # noqa: SLF001 - our own parser
    # a non-root user, set after the installs
    users = [rest for k, rest in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") > max(
        i for i, (k, rest) in enumerate(steps) if k == "RUN" and "pip install" in rest
    )


def test_dockerfile_installs_dependencies_before_copying_the_source() -> None:
    steps = dockerfile_instructions()

    def first(predicate: Any) -> int:
        return next(i for i, step in enumerate(steps) if predicate(*step))

    copy_cfg = first(lambda k, r: k == "COPY" and "setup.cfg" in r)
    deps = first(lambda k, r: k == "RUN" and "--requirement" in r)
    copy_src = first(lambda k, r: k == "COPY" and r.startswith("streamapp/"))
    install = first(lambda k, r: k == "RUN" and "--no-deps ." in r)
    assert copy_cfg < deps < copy_src < install
    copied_before_deps = " ".join(r for k, r in steps[:deps] if k == "COPY")
    assert "streamapp/" not in copied_before_deps


def test_what_the_dockerfile_copies_exists_and_is_not_dockerignored() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for keyword, rest in dockerfile_instructions():
        if keyword != "COPY":
            continue
        if "--from=" in rest:  # from another stage, not the context
            continue
        sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
        for source in sources:
            if "[" in source:  # optional file (glob that may match nothing)
                continue
            path = ROOT / source
            assert path.exists(), f"COPY {source}: missing"
            if path.is_dir():
                files = [p for p in path.rglob("*") if p.is_file()]
                assert files, f"COPY {source}: empty, so a fresh clone lacks it"
            assert source.rstrip("/") not in ignored, f"{source} is in .dockerignore"


def test_dockerignore_keeps_secrets_and_state_out_of_the_image() -> None:
    lines = set(DOCKERIGNORE.read_text(encoding="utf-8").split())
    assert {".env", ".git", ".venv", ".stack"} <= lines


# ---------------------------------------------------------------- compose contract


def test_services_of_the_zookeeper_variant() -> None:
    services = load(COMPOSE)["services"]
    assert {"zookeeper", "kafka", "postgres", "app", "notebook"} <= set(services)

    zookeeper = services["zookeeper"]
    assert re.fullmatch(r"confluentinc/cp-zookeeper:7\.9\.\d+", zookeeper["image"])
    zk_env = env_of(zookeeper)
    assert zk_env["ZOOKEEPER_CLIENT_PORT"] == "2181"
    assert int(container_env(zookeeper)["ZOOKEEPER_TICK_TIME"]) > 0

    kafka = services["kafka"]
    assert re.fullmatch(r"confluentinc/cp-kafka:7\.9\.\d+", kafka["image"])
    k_env = env_of(kafka)
    assert int(container_env(kafka)["KAFKA_BROKER_ID"]) >= 0
    assert k_env["KAFKA_ZOOKEEPER_CONNECT"] == "zookeeper:2181"
    assert kafka["depends_on"]["zookeeper"]["condition"] == "service_healthy"


def test_services_of_the_kraft_variant() -> None:
    services = load(COMPOSE_KRAFT)["services"]
    assert {"kafka", "postgres", "app", "notebook"} <= set(services)
    assert "zookeeper" not in services
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", kafka["image"])
    k_env = container_env(kafka)
    assert k_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in k_env
    node = k_env["KAFKA_NODE_ID"]
    assert k_env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert k_env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "CONTROLLER:" in k_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_kafka_listeners(path: Path) -> None:
    kafka = load(path)["services"]["kafka"]
    k_env = container_env(kafka)
    advertised = dict(
        item.split("://", 1) for item in k_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert advertised == {
        "PLAINTEXT": "kafka:29092",
        "PLAINTEXT_HOST": "localhost:9092",
    }
    protocol_map = dict(
        item.split(":", 1)
        for item in k_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(advertised) <= set(protocol_map)
    assert k_env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert k_env[name] == "1", name
    assert "9092:9092" in ports_of(kafka)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_postgres(path: Path) -> None:
    compose = load(path)
    postgres = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:15(\.\d+)?(-[a-z0-9]+)?", postgres["image"])
    assert "5320:5432" in ports_of(postgres)
    volume, _, target = postgres["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in (compose.get("volumes") or {}), "a named volume, declared"
    pg_env = env_of(postgres)
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert variables(pg_env[name]) == [(name, ":?")], f"{name} must come from .env"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_app_and_notebook(path: Path) -> None:
    services = load(path)["services"]
    app, notebook = services["app"], services["notebook"]
    assert env_of(app)["APP_MODE"] == "web"
    assert env_of(notebook)["APP_MODE"] == "jupyter"
    assert {"web", "jupyter"} == set(APP_MODES)
    for service in (app, notebook):
        assert service["build"]["context"] == "."
        assert service["image"] == app["image"], "one image for both modes"
        assert "container_name" not in service and "hostname" not in service
    assert any(p.endswith("8888:8888") for p in ports_of(notebook))


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_app_scales_without_port_collisions(path: Path) -> None:
    """`--scale app=3` needs no fixed name and a host port range (or none)."""
    app = load(path)["services"]["app"]
    for mapping in ports_of(app):
        host, _, container = mapping.rpartition(":")
        assert container == "6066"
        if host:
            first, _, last = host.rpartition("-")
            assert first, f"{mapping}: a single host port blocks --scale app=3"
            assert int(last) - int(first) + 1 >= 3


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_healthchecks_restart_policies_and_healthy_dependencies(path: Path) -> None:
    services = load(path)["services"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), (
            name
        )
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: use the long depends_on form"
        for dependency, spec in depends_on.items():
            assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"
    for name in ("app", "notebook"):
        assert set(services[name]["depends_on"]) >= {"kafka", "postgres"}
        assert services[name]["healthcheck"]["test"] == [
            "CMD",
            "streamapp-entrypoint",
            "--healthcheck",
        ]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_optional_kafka_ui_profile(path: Path) -> None:
    services = load(path)["services"]
    ui = [s for s in services.values() if "ui" in s.get("profiles", [])]
    assert len(ui) == 1
    assert re.match(r"(provectuslabs/kafka-ui|redpandadata/console):", ui[0]["image"])
    assert "kafka:29092" in all_strings(ui[0].get("environment", {}))
    # every other service starts without a profile
    assert all(not s.get("profiles") for s in services.values() if s is not ui[0])


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_images_are_pinned(path: Path) -> None:
    for name, service in load(path)["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


# ------------------------------------------------------------ one set of names


def test_every_env_example_key_is_a_setting() -> None:
    names = {name.upper() for name in settings_fields()}
    unknown = sorted(set(read_env_file(ENV_EXAMPLE)) - names)
    assert not unknown, f".env.example keys that are no Settings field: {unknown}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_variables_are_settings_and_required_ones_are_in_env_example(
    path: Path,
) -> None:
    names = {name.upper() for name in settings_fields()}
    example = read_env_file(ENV_EXAMPLE)
    for value in all_strings(load(path)):
        for name, op in variables(value):
            if name in HOST_PORTS:
                assert op == ":-", f"{name} needs its default"
                continue
            assert name in names, f"${{{name}}} in {path.name} is no Settings field"
            if op in (":?", "?", None):
                assert name in example, f"{path.name} needs {name} in .env.example"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("service", ["app", "notebook"])
def test_the_app_gets_every_setting_it_reads(path: Path, service: str) -> None:
    """Every setting the app uses is given to it, or its default is container-safe."""
    spec = load(path)["services"][service]
    raw_env = env_of(spec)
    env = container_env(spec)
    for name, value in CONTAINER_VALUES.items():
        assert env.get(name) == value, f"{service}: {name} must be {value!r}"
    # no secret is written into the file
    for name in SECRETS:
        if name in raw_env:
            assert variables(raw_env[name]), f"{name} is hard-coded"
    # what a user sets in .env reaches the container (unless fixed above)
    for name in read_env_file(ENV_EXAMPLE):
        if name.lower() in STACK_ONLY or name in CONTAINER_VALUES or name == "APP_MODE":
            continue
        assert any(n == name for n, _ in variables(raw_env.get(name, ""))), (
            f"{service}: {name} from .env is not passed to the container"
        )
    defaults = Settings()
    for field_name in settings_fields():
        key = field_name.upper()
        if field_name in STACK_ONLY or env.get(key):
            continue
        default = getattr(defaults, field_name)
        shown = default.get_secret_value() if isinstance(default, Secret) else default
        assert not (isinstance(default, Secret) and shown), f"{key}: secret default"
        assert not re.search(r"localhost|127\.0\.0\.1|:5320\b|:9092\b", str(shown)), (
            f"{service} does not get {key}; its default {shown!r} is host-local"
        )
    # and the container's own settings load and point inside the network
    settings = load_settings(environ=env, env_file=None)
    assert settings.kafka_bootstrap_servers == "kafka:29092"
    assert "@postgres:5432/" in settings.database_url.get_secret_value()
    assert settings.app_mode == {"app": "web", "notebook": "jupyter"}[service]
    assert settings.web_port == 6066
    assert "DATABASE_URL" not in raw_env, "derived from POSTGRES_* in the container"


@pytest.mark.parametrize(
    "path", [*COMPOSE_FILES, COMPOSE_CLUSTER], ids=lambda p: p.name
)
def test_host_ports_default_to_the_documented_ones(path: Path) -> None:
    """HOST_PORT_* move the published ports (the docker test's); defaults stay."""
    for value in all_strings(load(path)):
        for match in _VAR.finditer(value):
            name = match.group("name") or match.group("bare")
            if name in HOST_PORTS:
                assert match.group("arg") == HOST_PORTS[name], value


@pytest.mark.parametrize("path", list(STANDIN_OVERRIDES), ids=lambda p: p.name)
def test_standin_override_swaps_only_images(path: Path) -> None:
    """CI's override: local stand-in images for every third-party one, no more."""
    base = load(path)["services"]
    override = load(STANDIN_OVERRIDES[path])["services"]
    assert set(override) <= set(base)
    for name, service in override.items():
        if "build" in base[name]:
            # the app image builds on the Python stand-in
            assert set(service) == {"build"}, name
            assert set(service["build"]) == {"args"}, name
            assert service["build"]["args"] == {
                "PYTHON_IMAGE": "streamapp-standin/python:3.11-slim-bookworm"
            }
            continue
        assert set(service) == {"image"}, f"{name}: only image: changes"
        assert service["image"].startswith("streamapp-standin/"), service["image"]
    third_party = {
        n for n, s in base.items() if "build" not in s and not s.get("profiles")
    }
    assert third_party <= set(override), "a third-party image has no stand-in"
    official = {s["image"].rpartition(":")[0] for s in base.values()}
    for service in override.values():
        if "image" in service:
            assert service["image"].rpartition(":")[0] not in official


def test_the_three_broker_variant() -> None:
    """KRaft quorum of three, replication factor 3, min.insync.replicas 2."""
    compose = load(COMPOSE_CLUSTER)
    services = compose["services"]
    brokers = {name: services[name] for name in ("kafka-1", "kafka-2", "kafka-3")}
    assert "zookeeper" not in services and "kafka" not in services
    cluster_ids = set()
    for number, (name, broker) in enumerate(brokers.items(), 1):
        assert re.fullmatch(r"apache/kafka:3\.9\.\d+", broker["image"])
        env = container_env(broker)
        assert env["KAFKA_NODE_ID"] == str(number)
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
            "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        )
        assert env["KAFKA_ADVERTISED_LISTENERS"].startswith(
            f"PLAINTEXT://{name}:29092,"
        )
        for key in (
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
        ):
            assert env[key] == "3", key
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        cluster_ids.add(env["CLUSTER_ID"])
        assert name in broker["healthcheck"]["test"][-1]
    assert len(cluster_ids) == 1, "one cluster id for the three"
    host_ports = {ports_of(b)[0] for b in brokers.values()}
    assert host_ports == {"9092:9092", "9094:9092", "9095:9092"}
    for name in ("app", "notebook"):
        env = container_env(services[name])
        assert env["TOPIC_REPLICATION_FACTOR"] == "3"
        assert set(services[name]["depends_on"]) == {*brokers, "postgres"}
        settings = load_settings(environ=env, env_file=None)
        assert settings.kafka_bootstrap_servers == (
            "kafka-1:29092,kafka-2:29092,kafka-3:29092"
        )
        assert settings.topic_replication_factor == 3
    assert "5320:5432" in ports_of(services["postgres"])
    assert "pgdata" in compose["volumes"]
