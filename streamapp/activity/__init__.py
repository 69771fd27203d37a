"""Live seismic activity per region and window: window logic, state and queries.

* :mod:`streamapp.activity.windows`: contributions, aggregates, retention (pure);
* :mod:`streamapp.activity.state`: the windows a worker holds (its table's index)
  and what a batch changes;
* :mod:`streamapp.activity.query`: ``GET /api/activity``'s parameters and query.

Example::

    from streamapp.activity import RegionWindows, contribution_from_json
    state = RegionWindows()
    update = state.apply([contribution_from_json(clean_value)])
"""

from __future__ import annotations

from streamapp.activity.state import RegionWindows, Update, WindowRow, table_key
from streamapp.activity.windows import (
    EventContribution,
    aggregate,
    contribution_from_json,
    contribution_value,
    parse_contribution_value,
    window_start,
)

__all__ = [
    "EventContribution",
    "RegionWindows",
    "Update",
    "WindowRow",
    "aggregate",
    "contribution_from_json",
    "contribution_value",
    "parse_contribution_value",
    "table_key",
    "window_start",
]
