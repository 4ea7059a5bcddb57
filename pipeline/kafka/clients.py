"""The one place that builds kafka-python clients with twinstream's defaults.

Producers, ingest consumers, the CLI and the tests all need the same size limits
and delivery guarantees; building them here keeps a large item from passing one
client and bouncing off another.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from pipeline.kafka.bootstrap import explained
from pipeline.settings import Settings

CLIENT_ID = "twinstream"
# The broker and the topics accept messages well above the item limit, so an
# oversized item still reaches the ingest actors, which dead-letter it with a
# reason, instead of bouncing off the broker where nobody learns why.
MIN_MESSAGE_BYTES = 64 * 1024 * 1024
# Room for the key, the headers and the record-batch framing around an item.
ENVELOPE_BYTES = 1024 * 1024
# Bytes a producer packs into one partition's record batch. kafka-python's 16 KiB default holds
# one 10 KB face, so each item cost a request of its own: a 1 MiB batch lets a producer send
# ~4× the items per second of CPU (docs/experiments/2026-11-27-producers-pack-their-batches.md).
# A larger item still goes, alone in its batch.
PRODUCER_BATCH_BYTES = 1024 * 1024
# Ample for a managed cluster across the internet, and short enough that a refused password or
# certificate, which kafka-python retries until this runs out, fails in seconds, not as a hang.
BOOTSTRAP_TIMEOUT_MS = 5_000


def message_limit_bytes(settings: Settings) -> int:
    """Largest message the broker, the topics and every client agree to carry."""
    return max(MIN_MESSAGE_BYTES, settings.max_item_bytes + ENVELOPE_BYTES)


def bootstrap_servers(settings: Settings) -> list[str]:
    return [server.strip() for server in settings.kafka_bootstrap.split(",") if server.strip()]


def security(settings: Settings) -> dict[str, Any]:
    """The TLS and SASL settings in kafka-python's words, shared by every client."""
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        config |= {
            "ssl_cafile": _path(settings.kafka_ssl_cafile),
            "ssl_certfile": _path(settings.kafka_ssl_certfile),
            "ssl_keyfile": _path(settings.kafka_ssl_keyfile),
            "ssl_check_hostname": settings.kafka_ssl_check_hostname,
        }
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        config |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": None if password is None else password.get_secret_value(),
        }
    return config


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _connection(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": CLIENT_ID,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
    } | security(settings)


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer that never loses or duplicates an acknowledged item.

    Keys and values stay raw bytes: item ids are encoded by the caller and
    payloads are file bytes, so there is no serializer to disagree about.
    """
    config: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": message_limit_bytes(settings),
        "batch_size": PRODUCER_BATCH_BYTES,
        "allow_auto_create_topics": False,
    }
    with explained(settings):
        return KafkaProducer(**(_connection(settings) | config | overrides))


def make_consumer(settings: Settings, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer that commits only what the caller has durably processed.

    Starting from the earliest offset means a new group replays the whole topic,
    which is how a fresh index is rebuilt from the broker.
    """
    limit = message_limit_bytes(settings)
    config: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_partition_fetch_bytes": limit,
        "fetch_max_bytes": limit,
    }
    with explained(settings):
        return KafkaConsumer(**(_connection(settings) | config | overrides))


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    with explained(settings):
        return KafkaAdminClient(**(_connection(settings) | overrides))


def headers(**values: str | int | None) -> list[tuple[str, bytes]]:
    """Kafka headers from keyword arguments, UTF-8 encoded.

    Header names use hyphens (`content-type`), which keywords cannot, so each
    underscore in a keyword becomes a hyphen. `None` leaves a header out, which
    is how optional headers such as `label` are skipped.
    """
    return [
        (name.replace("_", "-"), str(value).encode())
        for name, value in values.items()
        if value is not None
    ]


def header_value(msg_headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The decoded value of header `name`, or None when it is absent or null.

    A repeated header yields its last value, the one added most recently.
    """
    found: bytes | None = None
    for key, value in msg_headers or ():
        if key == name:
            found = value
    if found is None:
        return None
    try:
        return found.decode()
    except UnicodeDecodeError as error:
        raise ValueError(f"Kafka header {name!r} is not UTF-8: {found[:64]!r}") from error
