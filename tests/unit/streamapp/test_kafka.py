"""Unit tests of the Kafka client options and the durable producer."""

from __future__ import annotations

import dataclasses

import faust

from streamapp.app import app
from streamapp.kafka import (
    DurableProducer,
    DurableTransport,
    aiokafka_kwargs,
    faust_credentials,
)
from streamapp.settings import Secret, load_settings


def test_app_produces_with_acks_all_and_idempotence() -> None:
    assert isinstance(app.transport, DurableTransport)
    producer = app.producer
    assert isinstance(producer, DurableProducer)
    extra = producer._settings_extra()
    assert extra["enable_idempotence"] is True
    assert extra["acks"] == "all"


def test_plaintext_has_no_credentials() -> None:
    settings = load_settings({}, env_file=None)
    assert faust_credentials(settings) is None
    assert aiokafka_kwargs(settings) == {
        "bootstrap_servers": "localhost:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_settings_reach_faust_and_aiokafka() -> None:
    settings = dataclasses.replace(
        load_settings({}, env_file=None),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=Secret("pw"),
    )
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password) == ("svc", "pw")
    assert creds.mechanism.value == "SCRAM-SHA-512"
    kwargs = aiokafka_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "svc"
    assert kwargs["sasl_plain_password"] == "pw"


def test_the_worker_leaves_the_root_logger_level_alone() -> None:
    """faust's spinner sets the root logger to DEBUG at ``-l warn`` (every library's
    debug records get built); streamapp's worker has no spinner."""
    import logging

    from streamapp.app import app
    from streamapp.kafka import StreamWorker

    assert app.conf.Worker is StreamWorker
    worker = StreamWorker(app, loglevel="warn")
    assert worker.spinner is None
    logger = logging.getLogger("streamapp-test-root")
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.WARNING)
    worker.on_setup_root_logger(logger, logging.WARNING)
    assert logger.level == logging.WARNING
    assert len(logger.handlers) == 1
