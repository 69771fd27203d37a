"""Paths the tests share: the repository root, the USGS captures, the faust CLI."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["FAUST", "FIXTURES", "ROOT"]

#: The repository root (the checkout the tests run from).
ROOT = Path(__file__).resolve().parents[2]
#: Real USGS feed captures.
FIXTURES = ROOT / "tests" / "fixtures" / "usgs"
#: The ``faust`` console script of the running interpreter's environment.
FAUST = Path(sys.executable).with_name("faust")
