"""Unit tests of the Kafka client options (TLS, SASL) for Faust and aiokafka."""

from __future__ import annotations

import dataclasses

import faust

from streamapp.kafka import aiokafka_kwargs, faust_credentials
from streamapp.settings import Secret, load_settings


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
