"""Helpers shared by the test suites; conftest modules hold only fixtures.

* :mod:`tests.support.paths`: the repository root, the USGS captures, the faust CLI.
* :mod:`tests.support.aio`: run a coroutine to completion from any test.
* :mod:`tests.support.ports`: a free TCP port.
* :mod:`tests.support.stack`: is the shared stack answering; schemas to create/drop.
* :mod:`tests.support.kafka`: create, wait for and delete topics on a real broker.
* :mod:`tests.support.feeds`: a local HTTP server playing the USGS feed.
* :mod:`tests.support.workers`: a real ``faust -A streamapp worker`` process.
* :mod:`tests.support.private_stack`: a private stack for tests that stop services.
* :mod:`tests.support.sinks`: records and received batches the agents read, real quakes.
"""

__all__: list[str] = []
