"""Plain values that cross the metadata store's boundary.

The rest of the code (Ray actors, the API, the trainer) only ever sees these
frozen dataclasses: they pickle cleanly through Ray and cannot lazily reach
back into a closed database session the way ORM objects would.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.items import Modality
from schemas.runs import RunStatus, RunTrigger


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class ItemRecord:
    """One indexed item; its raw bytes live on disk under `payload_sha256`."""

    modality: Modality
    item_id: str
    label: str | None = None
    payload_sha256: str | None = None
    content_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    produced_at: datetime | None = None
    indexed_at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelRecord:
    """A trained encoder version and the threshold calibrated for it."""

    version: str
    modality: Modality
    created_at: datetime = field(default_factory=utc_now)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    threshold: float
    energy: str
    artifact_path: str
    artifact_sha256: str
    active: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainingRunRecord:
    """One retraining attempt, from queued to promoted (or not)."""

    run_id: str
    modality: Modality
    trigger: RunTrigger
    status: RunStatus = RunStatus.QUEUED
    phase: str = "queued"
    progress: float = 0.0
    created_at: datetime = field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    data_counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    candidate_version: str | None = None
    promoted: bool | None = None
    error: str | None = None
