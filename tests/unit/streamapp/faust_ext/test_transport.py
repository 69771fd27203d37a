"""Unit tests of the app class, the durable producer and the worker class."""

from __future__ import annotations

import logging

from streamapp.app import app
from streamapp.faust_ext import DurableProducer, DurableTransport, StreamWorker


def test_app_produces_with_acks_all_and_idempotence() -> None:
    assert isinstance(app.transport, DurableTransport)
    producer = app.producer
    assert isinstance(producer, DurableProducer)
    extra = producer._settings_extra()
    assert extra["enable_idempotence"] is True
    assert extra["acks"] == "all"


def test_the_worker_leaves_the_root_logger_level_alone() -> None:
    """faust's spinner sets the root logger to DEBUG at ``-l warn`` (every library's
    debug records get built); streamapp's worker has no spinner."""
    assert app.conf.Worker is StreamWorker
    worker = StreamWorker(app, loglevel="warn")
    assert worker.spinner is None
    logger = logging.getLogger("streamapp-test-root")
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.WARNING)
    worker.on_setup_root_logger(logger, logging.WARNING)
    assert logger.level == logging.WARNING
    assert len(logger.handlers) == 1
