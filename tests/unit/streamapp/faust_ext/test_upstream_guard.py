"""The layer is pinned: versions checked at start, upstream sources hashed."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import metadata

import pytest

from streamapp.exceptions import ConfigError, UnsupportedVersion
from streamapp.faust_ext import (
    SUPPORTED_VERSIONS,
    BatchedPrometheusMonitor,
    DurableProducer,
    GaplessConsumer,
    StreamApp,
    StreamConsumerThread,
    StreamWorker,
    WaitForKafka,
    WaitingBootStrategy,
    check_versions,
    unsupported_versions,
    upstream,
)
from streamapp.faust_ext.upstream import UPSTREAM_SOURCES, changed_upstream

#: The layer's classes whose methods override upstream ones.
OVERRIDING = (
    GaplessConsumer,
    StreamConsumerThread,
    DurableProducer,
    StreamApp,
    StreamWorker,
    BatchedPrometheusMonitor,
    WaitingBootStrategy,
    WaitForKafka,
)


def test_no_upstream_function_the_layer_relies_on_has_changed() -> None:
    changed = changed_upstream()
    assert not changed, (
        "upstream code the faust_ext layer copies or relies on has changed; review "
        "the overrides against it, then update UPSTREAM_SOURCES: " + "; ".join(changed)
    )


def test_every_overridden_method_is_guarded() -> None:
    """A method of a layer class that shadows a base's method must be in the table."""
    guarded = set(UPSTREAM_SOURCES)
    unguarded: list[str] = []
    for cls in OVERRIDING:
        for name, member in vars(cls).items():
            if (
                not callable(member)
                or isinstance(member, type)  # a class attribute (BootStrategy=)
                or name in ("__init__", "__post_init__")
            ):
                continue
            for base in cls.__mro__[1:]:
                if name in vars(base):
                    key = f"{base.__module__}:{base.__qualname__}.{name}"
                    if key not in guarded:
                        unguarded.append(f"{cls.__name__}.{name} over {key}")
                    break
    assert unguarded == []


def test_a_changed_source_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "faust.transport.consumer:Consumer._new_offset"
    expected, why = UPSTREAM_SOURCES[name]
    table = dict(UPSTREAM_SOURCES)
    table[name] = ("0" * 16, why)
    table["faust.transport.consumer:Consumer._gone_in_a_release"] = ("1" * 16, "x")
    monkeypatch.setattr(upstream, "UPSTREAM_SOURCES", table)
    assert changed_upstream() == [
        f"{name} ({why})",
        "faust.transport.consumer:Consumer._gone_in_a_release (x)",
    ]
    assert upstream.source_hash(name) == expected


def test_faust_606_is_still_unfixed_upstream() -> None:
    """When this fails, the fix has landed: GaplessConsumer._new_offset may go."""
    from faust.transport.consumer import Consumer

    source = inspect.getsource(Consumer._new_offset)
    assert "if min(acked) - committed_offset > 1:" in source


def test_the_installed_versions_are_the_supported_ones() -> None:
    assert unsupported_versions() == []
    for name, version in SUPPORTED_VERSIONS.items():
        assert metadata.version(name) == version
    check_versions()


def test_another_version_is_refused_in_one_line() -> None:
    def version_of(name: str) -> str:
        if name == "aiokafka":
            return "0.15.0"
        if name == "mode-streaming":
            raise metadata.PackageNotFoundError(name)
        return SUPPORTED_VERSIONS[name]

    with pytest.raises(UnsupportedVersion) as caught:
        check_versions(version_of)
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert "\n" not in message
    assert "aiokafka 0.15.0 (supported: 0.14.0)" in message
    assert "mode-streaming missing (supported: 0.7.1)" in message
    assert "faust-streaming" not in message


def test_the_worker_stops_with_one_line_on_another_version() -> None:
    code = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        "m.version = lambda n: '0.16.0' if n == 'faust-streaming' else real(n)\n"
        "import streamapp.app\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "streamapp: configuration error: unsupported versions: faust-streaming "
        "0.16.0 (supported: 0.15.3). Install the pinned ones: "
        "pip install -c constraints.txt -e ."
    ]
