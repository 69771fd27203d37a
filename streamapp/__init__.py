"""streamapp: fetch a source on a timer, stream it through Kafka into PostgreSQL."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "app"]


def __getattr__(name: str) -> Any:
    """Build the Faust app on first use, so ``faust -A streamapp`` finds ``app``.

    Importing ``streamapp.settings`` (or any other submodule) stays side-effect free:
    the settings are only read when the app itself is wanted.
    """
    if name == "app":
        from streamapp.app import app as faust_app

        globals()["app"] = faust_app  # shadow the submodule with the App instance
        return faust_app
    raise AttributeError(f"module 'streamapp' has no attribute {name!r}")
