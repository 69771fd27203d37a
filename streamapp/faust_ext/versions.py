"""The faust-streaming, aiokafka and mode-streaming versions this layer supports.

The overrides in :mod:`streamapp.faust_ext` copy or depend on internals of exactly
these releases (``setup.cfg`` pins them). A worker started with any other version
stops with one line instead of running overrides written for other code.

Example::

    check_versions()  # raises UnsupportedVersion naming what to install
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata

from streamapp.exceptions import UnsupportedVersion

__all__ = ["SUPPORTED_VERSIONS", "check_versions", "unsupported_versions"]

#: Distribution name -> the one version the layer was written against.
SUPPORTED_VERSIONS: Mapping[str, str] = {
    "faust-streaming": "0.15.3",
    "aiokafka": "0.14.0",
    "mode-streaming": "0.7.1",
}


def unsupported_versions(
    version_of: Callable[[str], str] | None = None,
) -> list[str]:
    """``name installed (supported: x)`` for each installed version that differs."""
    version_of = version_of or metadata.version
    problems: list[str] = []
    for name, supported in SUPPORTED_VERSIONS.items():
        try:
            installed = version_of(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != supported:
            problems.append(f"{name} {installed} (supported: {supported})")
    return problems


def check_versions(version_of: Callable[[str], str] | None = None) -> None:
    """Raise :class:`UnsupportedVersion` unless every pinned version is installed."""
    problems = unsupported_versions(version_of)
    if problems:
        raise UnsupportedVersion(
            "unsupported versions: "
            + "; ".join(problems)
            + ". Install the pinned ones: pip install -c constraints.txt -e ."
        )
