"""Shared helpers of the devstack unit tests."""

from __future__ import annotations

from streamapp.settings import Settings, load_settings

__all__ = ["alt_settings", "props"]


def props(text: str) -> dict[str, str]:
    """A properties file as a dict (comments skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def alt_settings(**env: str) -> Settings:
    """Settings on ports other than the shared stack's, plus ``env``."""
    base = {
        "ZOOKEEPER_CLIENT_PORT": "12181",
        "KAFKA_ZOOKEEPER_CONNECT": "localhost:12181",
        "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:19092",
        "KAFKA_BOOTSTRAP_SERVERS": "localhost:19092",
        "POSTGRES_PORT": "15320",
    }
    return load_settings(environ={**base, **env}, env_file=None)
