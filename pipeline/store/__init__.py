"""SQL metadata for items, model versions and training runs (SQLite or PostgreSQL)."""

from pipeline.store.metadata import (
    MetadataStore,
    RecordNotFoundError,
    VersionExistsError,
    version_number,
)
from pipeline.store.records import (
    ItemRecord,
    ModelRecord,
    RunStatus,
    RunTrigger,
    TrainingRunRecord,
)

__all__ = [
    "ItemRecord",
    "MetadataStore",
    "ModelRecord",
    "RecordNotFoundError",
    "RunStatus",
    "RunTrigger",
    "TrainingRunRecord",
    "VersionExistsError",
    "version_number",
]
