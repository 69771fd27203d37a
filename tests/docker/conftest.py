"""Fixtures of the docker tests: the engine, the image (offline build), projects.

These tests run only under `make docker-test` (STREAMAPP_DOCKER_TEST=1); `make test`
reports them as skipped. STREAMAPP_DOCKER_STANDINS=1 (what CI sets) adds the
stand-in overrides, so no image is ever pulled.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.docker.compose import ROOT, Compose, Database, HostPorts, engine_problem

ENABLED = os.environ.get("STREAMAPP_DOCKER_TEST") == "1"
STANDINS = os.environ.get("STREAMAPP_DOCKER_STANDINS") == "1"
IMAGE = "streamapp:local"
PYTHON_STANDIN = "streamapp-standin/python:3.11-slim-bookworm"
FEED_OVERRIDE = Path(__file__).with_name("compose.feed.yml")


def _standins_of(compose_file: Path) -> Path:
    """docker-compose.X.yml -> docker-compose.X.standins.yml (same services)."""
    return compose_file.with_name(compose_file.stem + ".standins.yml")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="docker compose for real: run `make docker-test`")
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def engine() -> None:
    """A Docker engine and the Compose v2 plugin answer, else FAIL in one line."""
    problem = engine_problem()
    if problem:
        pytest.fail(f"make docker-test: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def app_image(engine: None) -> str:
    """streamapp:local, built offline from ./wheelhouse (make wheelhouse)."""
    if not list((ROOT / "wheelhouse").glob("*.whl")):
        pytest.fail("no wheels in ./wheelhouse: run `make wheelhouse`", pytrace=False)
    command = ["docker", "build", "--quiet", "--build-arg", "OFFLINE=1"]
    if STANDINS:
        command += ["--build-arg", f"PYTHON_IMAGE={PYTHON_STANDIN}"]
    command += ["--tag", IMAGE, "."]
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    size = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", IMAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"\n{IMAGE}: built offline in {time.monotonic() - started:.0f} s, "
        f"{int(size) / 1e6:.0f} MB"
    )
    return IMAGE


@pytest.fixture(scope="session")
def host_ports() -> HostPorts:
    ports = HostPorts()
    busy = ports.busy()
    if busy:
        pytest.fail(
            f"host ports in use, the docker test needs them: {busy}", pytrace=False
        )
    return ports


@pytest.fixture
def credentials() -> dict[str, str]:
    return {
        "POSTGRES_USER": "streamapp",
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "POSTGRES_DB": "streamapp",
        "JUPYTER_TOKEN": secrets.token_hex(16),
    }


@pytest.fixture
def make_project(
    app_image: str,
    host_ports: HostPorts,
    credentials: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Compose]]:
    """A compose project on the test's host ports; `down -v` at the end, always."""
    projects: list[Compose] = []
    env_file = tmp_path / "empty.env"  # never the developer's .env
    env_file.write_text("", encoding="utf-8")

    def make(
        name: str, compose_file: Path, env: dict[str, str], feed: bool = False
    ) -> Compose:
        files = [compose_file]
        if STANDINS:
            files.append(_standins_of(compose_file))
        if feed:
            files.append(FEED_OVERRIDE)
        project = Compose(
            files=files,
            project=f"satest-{name}",
            env={**host_ports.env(), **credentials, **env},
            env_file=env_file,
        )
        project.run("down", "--volumes", "--remove-orphans", check=False)
        projects.append(project)
        return project

    yield make
    failed = getattr(request.node, "rep_call", None)
    for project in projects:
        if failed is not None and failed.failed:
            print(f"\n---- {project.project}: what ran")
            print("\n".join(project.log))
            print(project.logs(tail=60))
        project.run(
            "down", "--volumes", "--remove-orphans", "--timeout", "10", check=False
        )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def db(host_ports: HostPorts, credentials: dict[str, str]) -> Database:
    """The project's PostgreSQL through its published host port."""
    return Database(
        port=host_ports.postgres,
        user=credentials["POSTGRES_USER"],
        password=credentials["POSTGRES_PASSWORD"],
        dbname=credentials["POSTGRES_DB"],
    )
