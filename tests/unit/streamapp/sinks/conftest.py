"""Fixtures of the sink unit tests."""

from __future__ import annotations

import pytest

from streamapp.settings import Settings, load_settings


@pytest.fixture
def settings() -> Settings:
    return load_settings({"POSTGRES_SCHEMA": "unit_sink"}, env_file=None)
