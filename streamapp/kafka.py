"""Kafka client options from the settings, shared by Faust and plain aiokafka."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TransportT

from streamapp.settings import Settings

__all__ = [
    "DurableProducer",
    "DurableTransport",
    "StreamApp",
    "aiokafka_kwargs",
    "faust_credentials",
    "ssl_context",
]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """An SSL context when the security protocol uses TLS, else None."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            settings.kafka_ssl_certfile, keyfile=settings.kafka_ssl_keyfile or None
        )
    return context


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust broker credentials for SSL / SASL, or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if protocol == "SSL" and context is not None:
        return faust.SSLCredentials(context)
    return None


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / admin clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


class DurableProducer(aiokafka_driver.Producer):
    """Faust's aiokafka producer with ``acks=all`` and idempotence on every send.

    Faust enables idempotence only inside transactions (exactly-once mode); a
    retried batch could then be written twice. Here the broker deduplicates
    retries per producer id and sequence number, and all in-sync replicas must
    have a record before its delivery future resolves.
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class DurableTransport(aiokafka_driver.Transport):
    """The aiokafka transport, producing with :class:`DurableProducer`."""

    Producer = DurableProducer


class StreamApp(faust.App):
    """``faust.App`` whose producer is durable (see :class:`DurableProducer`)."""

    def _new_transport(self) -> TransportT:
        return DurableTransport(self.conf.broker_consumer, self)
