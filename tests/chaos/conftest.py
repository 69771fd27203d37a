"""Fixtures of the chaos suite: the profile, the report, the stacks, isolated runs.

Helpers live in :mod:`tests.chaos.harness` and :mod:`tests.support`; this module
holds fixtures only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamapp.settings import Settings
from tests.chaos.harness import ChaosRun, Profile, Report, Target, load_profile
from tests.chaos.harness.report import write as write_report
from tests.support import private_stack
from tests.support.private_stack import PrivateStack


@pytest.fixture(scope="session")
def profile() -> Profile:
    """The session's profile (``CHAOS_PROFILE=ci|full``)."""
    return load_profile()


@pytest.fixture(scope="session")
def chaos_report(profile: Profile) -> Iterator[Report]:
    """The session's figures; the report file is written once at the end."""
    collected = Report(profile)
    yield collected
    if collected.results:
        path = write_report(profile.report_path, collected.results, profile)
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
    """The private stack as a run target (for scenarios that stop a service)."""
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
