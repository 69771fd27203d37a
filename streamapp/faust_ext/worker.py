"""The worker class (``Worker=`` setting): no terminal spinner.

Depends on ``faust.Worker.__init__`` setting ``self.spinner`` and on
``on_setup_root_logger`` reading it (faust-streaming 0.15.3). Can go when faust
stops lowering the root logger's level for its spinner.

Example::

    app = faust.App("streamapp", Worker=StreamWorker)
"""

from __future__ import annotations

from typing import Any

import faust

__all__ = ["StreamWorker"]


class StreamWorker(faust.Worker):
    """``faust worker`` without the terminal spinner.

    At ``-l warn`` and above faust sets the ROOT logger to DEBUG so that its spinner
    handler sees every record: each ``log.debug`` in every library (aiokafka logs
    one per message sent) then builds a record that the console handler drops --
    4 % of the worker's CPU in py-spy. Without the spinner the levels stay as set.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None
