"""One settings object for the service, the CLI and the tests.

All read the same `TWINSTREAM_*` environment so that `twinstream models` and a
running stack act on the same state directory, database and broker.
"""

import os
from functools import cached_property
from ipaddress import ip_address
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
# Index size at which exact search gives way to IVF (a 100k×64 flat scan is ~10 ms).
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
    # Most records per ingest poll: the micro-batch the encoder sees while the actor is behind
    # (at the live tail a poll returns what has arrived). 256 drains a backlog ~25 % faster
    # than 64 on a 2-core CPU (README, "Ingest throughput"); memory is bounded by the fetch
    # size and decoded inputs are small (under 100 kB an item).
    ingest_batch_size: int = 256
    # torch threads of an ingest actor or a training run; Ray would otherwise pin actors to one.
    embed_threads: int = os.cpu_count() or 1
    # Training preset the service uses for first models and retraining.
    train_preset: str = "default"
    # Items at which an index switches from exact search to IVF (0 = stay exact).
    index_ivf_threshold: int = DEFAULT_IVF_THRESHOLD
    # Raw item bytes kept for retraining; unset = <state_dir>/payloads. A separate
    # disk (or a mount shared by the nodes of a cluster) can hold them instead.
    payloads_dir: Path = Path()
    # An index checkpoint is written after this many seconds or index operations, whichever
    # comes first: the most a crash can make the stack replay from Kafka.
    snapshot_interval_s: float = 30.0
    snapshot_every_updates: int = 5000
    # The promotion gate: a candidate must beat the active model's held-out EER by this much.
    retrain_min_improvement: float = 0.0
    # CPUs a retraining run reserves in the Ray cluster (it uses a GPU when there is one).
    retrain_num_cpus: float = 1.0
    # A retraining run learns from this many most recently indexed labelled items at most:
    # it decodes all of them into memory (20,000 faces are ~0.8 GB), so the stream's growth
    # must not decide whether it fits.
    retrain_max_items: int = Field(default=20_000, ge=2)
    # Serve replicas of the query API, and the requests each one works on at once.
    api_replicas: int = Field(default=1, ge=1)
    api_max_ongoing_requests: int = Field(default=32, ge=1)
    # GPUs per API replica; unset = a share of what the ingest actors leave free.
    api_num_gpus: float | None = Field(default=None, ge=0)
    # Concurrent queries of one replica share one encoder forward pass of up to this many
    # items, waiting at most this long for the batch to fill. 0 = take what queued while
    # the previous pass ran: no added latency when idle, full batches under load. 1 = no
    # Serve batching at all.
    api_batch_max_size: int = Field(default=16, ge=1)
    api_batch_wait_s: float = Field(default=0.0, ge=0)
    # torch threads of an API replica's forward pass. Query batches are small, and the
    # replica shares its cores with Serve's proxy and event loops: more replicas, not
    # more threads, is how queries scale on CPU.
    api_embed_threads: int = Field(default=1, ge=1)
    # Each replica searches its own copy of the active indexes, kept current by the holders
    # (a round trip saved per query; deletes and model switches wait for every copy).
    # false = every search and id lookup asks the holder.
    api_index_copies: bool = True
    # What receives HTTP: Serve's Python proxy, or HAProxy in front of replicas that serve
    # HTTP themselves (about 1.5× the query throughput on 2 cores; their ports then listen on
    # every interface, so it needs API_KEY). Set for a local Ray; a cluster sets
    # RAY_SERVE_ENABLE_HA_PROXY=1 in its own environment.
    api_ingress: Literal["proxy", "haproxy"] = "proxy"

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, state_dir: Path) -> Path:
        """Ray workers and tools such as mvn run in other directories than the caller."""
        return state_dir.expanduser().resolve()

    @model_validator(mode="before")
    @classmethod
    def _default_payloads_dir(cls, values: dict) -> dict:
        """The default lives under whichever state_dir was given, so it is filled in here."""
        if not values.get("payloads_dir"):
            values = values | {
                "payloads_dir": Path(values.get("state_dir", ".twinstream")) / "payloads"
            }
        return values

    @field_validator("payloads_dir")
    @classmethod
    def _absolute_payloads(cls, payloads_dir: Path) -> Path:
        return payloads_dir.expanduser().resolve()

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
    def index_dir(self) -> Path:
        return self.state_dir / "index"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"
