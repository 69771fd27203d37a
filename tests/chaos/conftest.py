"""Fixtures of the chaos suite: the profile, the report, the stacks, isolated runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamapp.settings import Settings
from tests.chaos import private_stack, report
from tests.chaos.harness import ChaosRun, Figures, Profile, Target, load_profile
from tests.chaos.private_stack import PrivateStack


@pytest.fixture(scope="session")
def profile() -> Profile:
    return load_profile()


class Report:
    """Collects each scenario's figures; written once at the end of the session."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.results: dict[str, Figures] = {}

    def add(self, scenario: str, figures: Figures) -> None:
        figures.measured_at = report.stamp()
        self.results[scenario] = figures
        print(f"\n[chaos] {report.table({scenario: figures})}")
        for line in figures.notes + figures.problems:
            print(f"[chaos]   {line}")


@pytest.fixture(scope="session")
def chaos_report(profile: Profile) -> Iterator[Report]:
    collected = Report(profile)
    yield collected
    if collected.results:
        path = report.write(profile.report_path, collected.results, profile)
        print(f"\n[chaos] report written to {path}")


@pytest.fixture(scope="session")
def shared_target(stack_ready: Settings) -> Target:
    """The shared development stack (never stopped): every run uses its own names."""
    return Target("shared", dict(os.environ))


@pytest.fixture(scope="session")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """The session's private stack (free ports, own STACK_DIR), purged at the end."""
    stack = private_stack.acquire(tmp_path_factory.mktemp("chaos-stack") / "stack")
    try:
        yield stack
    finally:
        private_stack.release()


@pytest.fixture(scope="session")
def private_target(private: PrivateStack) -> Target:
    return Target("private", dict(private.env))


@pytest.fixture
def chaos_run(tmp_path: Path) -> Iterator[Callable[[Target, str], ChaosRun]]:
    """Factory of isolated runs; every run is torn down (workers, topics, schema)."""
    runs: list[ChaosRun] = []

    def make(target: Target, scenario: str) -> ChaosRun:
        run = ChaosRun(target, tmp_path, scenario)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()
