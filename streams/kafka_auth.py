"""Kafka security settings (TLS, SASL PLAIN / SCRAM) for Faust and every aiokafka client.

One mapping from :class:`~streams.settings.Settings` to what the clients take: Faust's
``broker_credentials`` (:func:`faust_credentials`) and the keyword arguments of
``AIOKafkaProducer`` / ``AIOKafkaConsumer`` / ``AIOKafkaAdminClient`` (:func:`aiokafka_kwargs`).
With the default ``PLAINTEXT`` both are empty, so the clients are built exactly as before.
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.settings import Settings

__all__ = ["aiokafka_kwargs", "faust_credentials", "ssl_context"]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of ``SSL`` / ``SASL_SSL`` (CA file or the system store, optional client
    certificate); None for the plaintext protocols."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(
        cafile=settings.kafka_tls_ca_file or None,
        certfile=settings.kafka_tls_cert_file or None,
        keyfile=settings.kafka_tls_key_file or None,
    )


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: empty for ``PLAINTEXT``."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if protocol.startswith("SASL_"):
        kwargs.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password)
    return kwargs


def faust_credentials(settings: Settings) -> Any:  # noqa: ANN401 - faust.types.auth.CredentialsT | None
    """Faust's ``broker_credentials`` for the settings; None for ``PLAINTEXT``.

    Faust hands them to its aiokafka consumer, producer and admin calls
    (``credentials_to_aiokafka_auth``), giving the same arguments as :func:`aiokafka_kwargs`.
    """
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                 ssl_context=context, mechanism=settings.kafka_sasl_mechanism)
