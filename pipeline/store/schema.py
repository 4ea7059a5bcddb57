"""Tables of the metadata store, portable across SQLite and PostgreSQL.

Tables are created with ``create_all``; schema migrations are out of scope
until the first release that has to keep an older database. A table added later
(model_artifacts) is created in an existing database at its next start.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Engine, Enum, Index, Text, TypeDecorator, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pipeline.store.records import RunStatus, RunTrigger
from schemas.items import Modality


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps that come back tz-aware in UTC on every backend.

    SQLite has no time zone type and returns naive values, PostgreSQL returns
    the session's zone; normalising both here keeps comparisons and JSON
    rendering identical whichever database is configured. Naive input is
    rejected rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timestamps with a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _values_enum(enum_type: type[StrEnum]) -> Enum:
    """A VARCHAR enum holding the lower-case values the contract spells out."""
    return Enum(
        enum_type,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        Modality: _values_enum(Modality),
        RunStatus: _values_enum(RunStatus),
        RunTrigger: _values_enum(RunTrigger),
    }


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_modality_label", "modality", "label"),
        # Payload retention asks "does anything still point at this content?" on every delete.
        Index("ix_items_payload_sha256", "payload_sha256"),
    )

    modality: Mapped[Modality] = mapped_column(primary_key=True)
    item_id: Mapped[str] = mapped_column(primary_key=True)
    label: Mapped[str | None]
    payload_sha256: Mapped[str | None]
    content_type: Mapped[str]
    source_topic: Mapped[str]
    source_partition: Mapped[int]
    source_offset: Mapped[int]
    produced_at: Mapped[datetime | None]
    indexed_at: Mapped[datetime]


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        # The database backs up MetadataStore.activate_model: a second active
        # version of one modality fails to commit instead of going unnoticed.
        Index(
            "uq_model_versions_one_active",
            "modality",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    version: Mapped[str] = mapped_column(primary_key=True)
    modality: Mapped[Modality] = mapped_column(index=True)
    created_at: Mapped[datetime]
    config: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    threshold: Mapped[float]
    energy: Mapped[str]
    artifact_path: Mapped[str]
    artifact_sha256: Mapped[str]
    active: Mapped[bool] = mapped_column(default=False)


class ModelArtifact(Base):
    """A model version's artifact file, so that every node loads it from the database rather
    than from a disk only the trainer's machine has (pipeline/store/artifacts.py)."""

    __tablename__ = "model_artifacts"

    sha256: Mapped[str] = mapped_column(primary_key=True)
    data: Mapped[bytes]
    stored_at: Mapped[datetime]


class TrainingRun(Base):
    __tablename__ = "training_runs"

    run_id: Mapped[str] = mapped_column(primary_key=True)
    modality: Mapped[Modality] = mapped_column(index=True)
    trigger: Mapped[RunTrigger]
    status: Mapped[RunStatus]
    phase: Mapped[str]
    progress: Mapped[float]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    data_counts: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    candidate_version: Mapped[str | None]
    promoted: Mapped[bool | None]
    error: Mapped[str | None] = mapped_column(Text)


_POSTGRES_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('twinstream.schema'))"


def create_tables(engine: Engine) -> None:
    """Create missing tables, safely when several processes start at once.

    Concurrent ``CREATE TABLE`` from two fresh processes makes one of them fail
    on PostgreSQL, so creation runs under a transaction-scoped advisory lock
    there; on SQLite `engine` is expected to be a write engine, whose
    ``BEGIN IMMEDIATE`` already serialises it.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(_POSTGRES_SCHEMA_LOCK)
        Base.metadata.create_all(connection)
