"""The chaos suite: faults injected into real workers, every record reconciled.

Environment: ``CHAOS_PROFILE=ci|full`` (``make test`` / ``make chaos``),
``CHAOS_REPORT=<path>`` (where the report goes), ``CHAOS_KEEP=1`` (keep each run's
topics and schema on the stack for inspection, e.g. after a failure).
"""
