"""One settings object for the service, the CLI and the tests.

All read the same `TWINSTREAM_*` environment so that `twinstream models` and a
running stack act on the same state directory, database and broker.
"""

import os
from functools import cached_property
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.runs import TrainPreset

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# Index size at which exact search gives way to the compressed IVF kind (pipeline/index/growth.py):
# past it a flat scan per query costs more than an IVF probe.
DEFAULT_IVF_THRESHOLD = 100_000


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every field is read from the environment variable `TWINSTREAM_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="TWINSTREAM_", extra="ignore")

    kafka_bootstrap: str = Field(
        default=DEFAULT_KAFKA_BOOTSTRAP,
        description="Kafka bootstrap servers; on this machine's loopback with the PLAINTEXT "
        "protocol the stack runs an embedded broker, otherwise it uses the one there.",
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        description="How every Kafka client talks to the brokers: `PLAINTEXT`, `SSL` (TLS), "
        "`SASL_PLAINTEXT` or `SASL_SSL` (a managed service: TLS and a user name and password).",
    )
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        default="PLAIN",
        description="SASL mechanism for the `SASL_*` protocols: `PLAIN`, `SCRAM-SHA-256` or "
        "`SCRAM-SHA-512`.",
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        description="SASL user name (an API key on Confluent Cloud); needed by the `SASL_*` "
        "protocols.",
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password (an API secret on Confluent Cloud); needed by the `SASL_*` "
        "protocols.",
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CAs that sign the brokers' certificates, for `SSL` and "
        "`SASL_SSL`; unset: the system's trust store.",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None,
        description="PEM client certificate, for brokers that authenticate clients by TLS "
        "(mutual TLS).",
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None,
        description="PEM private key of KAFKA_SSL_CERTFILE, unless that file holds it too.",
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description="Whether a broker's certificate must name the host the client connected to.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata store (PostgreSQL for a cluster); "
        "unset: SQLite at `<STATE_DIR>/twinstream.db`.",
    )
    state_dir: Path = Field(
        default=Path(".twinstream"),
        description="Models, index checkpoints, the embedded broker's data and the SQLite store.",
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Interface the HTTP API binds; anything but loopback needs API_KEY.",
    )
    http_port: int = Field(default=8000, description="Port of the HTTP API.")
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, every /v1/* request needs it in the x-api-key header.",
    )
    retrain_schedule: str = Field(
        default="off",
        description="When to retrain every modality on its own: `off`, `every <N>s|m|h|d`, "
        "or a five-field cron expression (UTC).",
    )
    ray_address: str | None = Field(
        default=None,
        description="Address of an existing Ray cluster to run on (e.g. `ray://head:10001` "
        "or `auto`); unset: start a local Ray.",
    )
    ingest_actors: int | None = Field(
        default=None,
        description="Ingest actors sharing the consumer group; unset: one per GPU, or one per "
        "CPU but one, never more than TOPIC_PARTITIONS.",
    )
    max_item_bytes: int = Field(
        default=10 * 1024 * 1024,
        description="Largest item accepted: larger ones go to the dead-letter topic, or are "
        "answered 413.",
    )
    topic_partitions: int = Field(
        default=4,
        description="Partitions per item topic, set when the topic is created: the ceiling on "
        "ingest actors and on index shards.",
    )
    index_shards: int = Field(
        default=2,
        ge=1,
        description="Index shards per modality, each a Ray actor owning the item topic's "
        "partitions p with p % INDEX_SHARDS equal to its number; queries ask every shard. At "
        "most the topic's partitions; a change starts the shards empty, replaying the topics.",
    )
    index_replicas: int = Field(
        default=1,
        ge=1,
        description="Copies of each index shard, each a Ray actor replaying the same "
        "partitions, placed on different nodes where the cluster has them: queries go to any "
        "live one and fail over, ingest applies every batch to all. More than one turns "
        "API_INDEX_COPIES off (a copy follows one replica).",
    )
    ingest_num_gpus: float | None = Field(
        default=None,
        description="GPUs per ingest actor; unset: one if the cluster has a GPU at start.",
    )
    ingest_batch_size: int = Field(
        default=256,
        description="Most records per ingest poll: the batch the encoder sees while an actor "
        "is behind (at the live tail a poll returns what has arrived).",
    )
    embed_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        description="torch threads of an ingest actor or a training run; default: the "
        "machine's CPU count (Ray would otherwise pin an actor to one).",
    )
    train_preset: TrainPreset = Field(
        default=TrainPreset.DEFAULT,
        description="Training preset for first models and for runs that name none.",
    )
    train_overrides: dict[str, Any] = Field(
        default={},
        description="Training config fields (JSON) that replace the preset's in every run, "
        'e.g. `{"max_seconds": 1200}` on a slow machine.',
    )
    index_ivf_threshold: int = Field(
        default=DEFAULT_IVF_THRESHOLD,
        description="Items at which an index switches from exact search to IVF with 6-bit "
        "codes (rebuilt at every 4× growth); 0: stay exact.",
    )
    payloads_dir: Path = Field(
        default_factory=lambda data: data["state_dir"] / "payloads",
        description="Raw item bytes kept for retraining; default: `<STATE_DIR>/payloads`. A "
        "cache of the item topics: bytes a node lacks are read back from them.",
    )
    snapshot_interval_s: float = Field(
        default=30.0,
        description="An index checkpoint is written after this many seconds or "
        "SNAPSHOT_EVERY_UPDATES operations, whichever comes first: the most a crash replays.",
    )
    snapshot_every_updates: int = Field(
        default=5000, description="Index operations between checkpoints (see above)."
    )
    retrain_min_improvement: float = Field(
        default=0.0,
        description="The promotion gate: a candidate must beat the active model's held-out EER "
        "by this much.",
    )
    retrain_num_cpus: float = Field(
        default=1.0,
        description="CPUs a retraining run reserves in Ray (it uses a GPU when there is one).",
    )
    model_versions_kept: int = Field(
        default=5,
        ge=1,
        description="Rejected retraining candidates older than a modality's newest N versions "
        "lose their artifacts (after each run and at `up`): they stay listed with their "
        "metrics but can no longer be activated. Versions that served keep theirs.",
    )
    retrain_max_items: int = Field(
        default=20_000,
        ge=2,
        description="A retraining run learns from at most this many most recently indexed "
        "labelled items; it decodes them all into memory (20,000 faces are ~0.8 GB).",
    )
    api_replicas: int = Field(default=1, ge=1, description="Serve replicas of the query API.")
    api_max_ongoing_requests: int = Field(
        default=32, ge=1, description="Requests one API replica works on at once."
    )
    api_num_gpus: float | None = Field(
        default=None,
        ge=0,
        description="GPUs per API replica; unset: a share of what the ingest actors leave.",
    )
    api_batch_max_size: int = Field(
        default=16,
        ge=1,
        description="Concurrent queries of a replica share one encoder pass of up to this "
        "many items; 1: no batching.",
    )
    api_batch_wait_s: float = Field(
        default=0.0,
        ge=0,
        description="Longest wait for a query batch to fill; 0: take what queued during the "
        "previous pass (no added latency when idle).",
    )
    api_embed_threads: int = Field(
        default=1,
        ge=1,
        description="torch threads of an API replica's forward pass; on CPU, queries scale "
        "with replicas, not threads.",
    )
    api_index_copies: bool = Field(
        default=True,
        description="Each replica searches its own copy of the active indexes, kept current "
        "by the holders; false: every search asks the holder. Only with INDEX_REPLICAS 1.",
    )
    api_ingress: Literal["proxy", "haproxy"] = Field(
        default="proxy",
        description="What receives HTTP: Serve's Python proxy, or HAProxy in front of "
        "replicas (about 1.5x the query throughput; needs API_KEY). A cluster sets "
        "RAY_SERVE_ENABLE_HA_PROXY=1 in its own environment instead.",
    )

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, state_dir: Path) -> Path:
        """Ray workers and tools such as mvn run in other directories than the caller."""
        return state_dir.expanduser().resolve()

    @field_validator("payloads_dir")
    @classmethod
    def _absolute_payloads(cls, payloads_dir: Path) -> Path:
        return payloads_dir.expanduser().resolve()

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _absolute_tls_file(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().resolve()

    @model_validator(mode="after")
    def _shards_own_partitions(self) -> "Settings":
        if self.index_shards > self.topic_partitions:
            raise ValueError(
                f"INDEX_SHARDS ({self.index_shards}) is more than TOPIC_PARTITIONS "
                f"({self.topic_partitions}): a shard would own no partition"
            )
        return self

    @model_validator(mode="after")
    def _sasl_credentials(self) -> "Settings":
        """A missing credential fails here, not as a refused login at the first connection."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            raise ValueError(
                f"TWINSTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "TWINSTREAM_KAFKA_SASL_USERNAME and TWINSTREAM_KAFKA_SASL_PASSWORD"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'twinstream.db'}"

    @property
    def kafka_embedded(self) -> bool:
        """The launcher only ever runs a broker on this machine's loopback, for PLAINTEXT
        clients; secured settings name a cluster run elsewhere (or reached by a tunnel)."""
        plaintext = self.kafka_security_protocol == "PLAINTEXT"
        return plaintext and is_loopback(self.kafka_bootstrap.rsplit(":", 1)[0])

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def index_dir(self) -> Path:
        return self.state_dir / "index"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"
