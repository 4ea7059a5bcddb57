"""One settings object for the service, the CLI and the tests.

All read the same `TWINSTREAM_*` environment so that `twinstream models` and a
running stack act on the same state directory, database and broker.
"""

import os
from functools import cached_property
from ipaddress import ip_address
from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWINSTREAM_", extra="ignore")

    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    database_url: str | None = None
    state_dir: Path = Path(".twinstream")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    api_key: SecretStr | None = None
    retrain_schedule: str = "off"
    ray_address: str | None = None
    # How many ingest actors share the consumer group; unset = one per GPU, or one per CPU
    # but one (left for the API and the holders), never more than there are partitions.
    ingest_actors: int | None = None
    # Items larger than this are rejected to the dead-letter topic / with 413.
    max_item_bytes: int = 10 * 1024 * 1024
    # Partitions per item topic: the ceiling on ingest parallelism.
    topic_partitions: int = 4
    # GPUs per ingest actor; unset = one if the cluster has a GPU when the stack starts.
    ingest_num_gpus: float | None = None
    # Records per ingest poll: the micro-batch the encoder sees.
    ingest_batch_size: int = 64
    # torch threads per process that embeds; Ray would otherwise pin actors to one.
    embed_threads: int = os.cpu_count() or 1
    # Training preset the service uses for first models and retraining.
    train_preset: str = "default"
    # An index checkpoint is written after this many seconds or index operations, whichever
    # comes first: the most a crash can make the stack replay from Kafka.
    snapshot_interval_s: float = 30.0
    snapshot_every_updates: int = 5000
    # The promotion gate: a candidate must beat the active model's held-out EER by this much.
    retrain_min_improvement: float = 0.0
    # CPUs a retraining run reserves in the Ray cluster (it uses a GPU when there is one).
    retrain_num_cpus: float = 1.0

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, state_dir: Path) -> Path:
        """Ray workers and tools such as mvn run in other directories than the caller."""
        return state_dir.expanduser().resolve()

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'twinstream.db'}"

    @property
    def kafka_embedded(self) -> bool:
        """The launcher only ever runs a broker on this machine's loopback."""
        return is_loopback(self.kafka_bootstrap.rsplit(":", 1)[0])

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    @property
    def payloads_dir(self) -> Path:
        return self.state_dir / "payloads"

    @property
    def index_dir(self) -> Path:
        return self.state_dir / "index"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"
