"""``python -m devstack up|down|status|purge [--mode zookeeper|kraft]``."""

from __future__ import annotations

import sys

from devstack import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
