"""The metadata store: items, model versions (with their artifacts) and training runs in SQL.

Every method is one short transaction and hands back frozen records, so callers
in other processes (Ray actors, the Serve replica, the CLI) never hold a
session or a lock between calls.
"""

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields, replace
from typing import Any, Self, TypeVar
from uuid import uuid4

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.settings import Settings
from pipeline.store.engine import for_writes, make_engine
from pipeline.store.records import (
    ItemRecord,
    ModelRecord,
    RunStatus,
    RunTrigger,
    TrainingRunRecord,
    utc_now,
)
from pipeline.store.schema import (
    Base,
    Item,
    ModelArtifact,
    ModelVersion,
    TrainingRun,
    create_tables,
)
from schemas.items import Modality

RecordT = TypeVar("RecordT", ItemRecord, ModelRecord, TrainingRunRecord)

# Both dialects spell the upsert `insert(...).on_conflict_do_update(...)`.
_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_ITEM_KEY = ("modality", "item_id")
# Stays well below SQLite's and PostgreSQL's bound-parameter limits.
_ID_CHUNK = 500
_RUN_IDENTITY_FIELDS = frozenset({"run_id", "modality", "trigger", "created_at"})
_RUN_UPDATABLE_FIELDS = frozenset(f.name for f in fields(TrainingRunRecord)) - _RUN_IDENTITY_FIELDS


def _id_chunks(values: Sequence[str]) -> Iterator[list[str]]:
    """`values` in chunks for `IN (…)`, each padded with its last value to a power of two (or
    _ID_CHUNK): about ten statement texts for any counts, where SQLite's driver would cache one
    statement per count, each holding its compiled program and bound values."""
    for start in range(0, len(values), _ID_CHUNK):
        chunk = list(values[start : start + _ID_CHUNK])
        size = min(_ID_CHUNK, 1 << (len(chunk) - 1).bit_length())
        yield chunk + chunk[-1:] * (size - len(chunk))


class RecordNotFoundError(KeyError):
    """An id that the store does not hold; a KeyError so lookups read naturally."""

    def __str__(self) -> str:
        return str(self.args[0])


class VersionExistsError(ValueError):
    """Another writer registered this version first; ask `next_version` again."""


def version_number(version: str) -> int:
    """The n of `face-vN`; 0 for names outside that scheme, which sort oldest."""
    _, _, number = version.rpartition("-v")
    return int(number) if number.isdigit() else 0


class MetadataStore:
    """Items, model versions and training runs behind one SQLAlchemy URL.

    Missing tables are created on construction, so a fresh state directory or
    an empty PostgreSQL database needs no separate setup step.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine = make_engine(url)
        dialect = self._engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise ValueError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
        self._upsert_insert = _UPSERT_INSERTS[dialect]
        writer = for_writes(self._engine)
        self._reads = sessionmaker(self._engine, expire_on_commit=False)
        self._writes = sessionmaker(writer, expire_on_commit=False)
        create_tables(writer)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.resolved_database_url)

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        # Engines do not pickle; a store handed to a Ray actor reconnects there.
        return (type(self), (self.url,))

    def close(self) -> None:
        self._engine.dispose()

    # items

    def upsert_items(self, records: Sequence[ItemRecord]) -> None:
        """Insert or replace a batch in one transaction; later records win.

        Duplicates inside the batch are collapsed first: PostgreSQL refuses to
        let one statement touch the same row twice.
        """
        latest = {(r.modality, r.item_id): _values(r) for r in records}
        # Key order makes concurrent batches lock rows in the same order, so
        # overlapping upserts on PostgreSQL wait for each other, never deadlock.
        rows = [latest[key] for key in sorted(latest)]
        if not rows:
            return
        # The Core table, not the ORM class: ORM bulk inserts drop None values
        # and split the batch by which columns are set.
        insert = self._upsert_insert(Item.__table__)
        statement = insert.on_conflict_do_update(
            index_elements=list(_ITEM_KEY),
            set_={name: insert.excluded[name] for name in rows[0] if name not in _ITEM_KEY},
        )
        with self._writes.begin() as session:
            session.execute(statement, rows)

    def delete_items(self, modality: Modality, ids: Sequence[str]) -> int:
        """Remove items by id; returns how many existed."""
        unique_ids = sorted(set(ids))
        deleted = 0
        with self._writes.begin() as session:
            for chunk in _id_chunks(unique_ids):
                statement = (
                    delete(Item)
                    .where(Item.modality == modality, Item.item_id.in_(chunk))
                    .execution_options(synchronize_session=False)
                )
                deleted += session.execute(statement).rowcount
        return deleted

    def payload_hashes(self, modality: Modality, ids: Sequence[str]) -> set[str]:
        """The content hashes the given items currently point at."""
        unique_ids = sorted(set(ids))
        hashes: set[str] = set()
        with self._reads.begin() as session:
            for chunk in _id_chunks(unique_ids):
                statement = select(Item.payload_sha256).where(
                    Item.modality == modality,
                    Item.item_id.in_(chunk),
                    Item.payload_sha256.is_not(None),
                )
                hashes.update(session.scalars(statement))
        return hashes

    def unreferenced_payloads(self, hashes: Sequence[str] | set[str]) -> set[str]:
        """Those of `hashes` that no item of any modality points at any more."""
        candidates = sorted(set(hashes))
        referenced: set[str] = set()
        with self._reads.begin() as session:
            for chunk in _id_chunks(candidates):
                statement = (
                    select(Item.payload_sha256).distinct().where(Item.payload_sha256.in_(chunk))
                )
                referenced.update(session.scalars(statement))
        return set(candidates) - referenced

    def get_item(self, modality: Modality, item_id: str) -> ItemRecord | None:
        with self._reads.begin() as session:
            row = session.get(Item, (modality, item_id))
            return None if row is None else _record(row, ItemRecord)

    def items_with_payload(
        self, modality: Modality, *, labelled_only: bool = False, newest: int | None = None
    ) -> list[ItemRecord]:
        """Items whose raw bytes are retained, by id: what an index is rebuilt from, and
        (labelled only) the training set. `newest` keeps only that many most recently indexed
        ones, the window a retraining run learns from."""
        statement = select(Item).where(Item.modality == modality, Item.payload_sha256.is_not(None))
        if labelled_only:
            statement = statement.where(Item.label.is_not(None))
        if newest is not None:
            statement = statement.order_by(Item.indexed_at.desc(), Item.item_id).limit(newest)
        with self._reads.begin() as session:
            rows = [_record(row, ItemRecord) for row in session.scalars(statement)]
        return sorted(rows, key=lambda record: record.item_id)

    def list_items(
        self, modality: Modality, *, label: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[list[ItemRecord], int]:
        """A page of the modality's items by id (with `label`, only those), and how many
        match in all: what the console's item browser shows."""
        where = [Item.modality == modality]
        if label is not None:
            where.append(Item.label == label)
        page = select(Item).where(*where).order_by(Item.item_id).offset(offset).limit(limit)
        total = select(func.count()).select_from(Item).where(*where)
        with self._reads.begin() as session:
            rows = [_record(row, ItemRecord) for row in session.scalars(page)]
            return rows, session.scalars(total).one()

    def count_items(self, modality: Modality) -> int:
        statement = select(func.count()).select_from(Item).where(Item.modality == modality)
        with self._reads.begin() as session:
            return session.scalars(statement).one()

    # model versions

    def next_version(self, modality: Modality) -> str:
        """The name after the highest registered one, e.g. `face-v4` after `face-v3`.

        Two racing callers can get the same name; the primary key lets only one
        `register_model` succeed and the other gets `VersionExistsError`.
        """
        statement = select(ModelVersion.version).where(ModelVersion.modality == modality)
        with self._reads.begin() as session:
            highest = max(map(version_number, session.scalars(statement)), default=0)
        return f"{Modality(modality).value}-v{highest + 1}"

    def register_model(self, record: ModelRecord, artifact: bytes | None = None) -> ModelRecord:
        """Add a version; if `record.active`, it also becomes the active one.

        `artifact`, the model file's bytes, is stored in the same transaction, so no reader
        finds the version before every node can load it.
        """
        if artifact is not None and _sha256(artifact) != record.artifact_sha256:
            raise ValueError(f"{record.version}: artifact bytes do not match its sha256")
        with self._writes.begin() as session:
            if artifact is not None:
                self._insert_artifact(session, artifact)
            session.add(ModelVersion(**_values(replace(record, active=False))))
            try:
                session.flush()
            except IntegrityError as error:
                raise VersionExistsError(f"model version {record.version!r} exists") from error
            if record.active:
                return _activate(session, record.version)
            return _record(session.get_one(ModelVersion, record.version), ModelRecord)

    def activate_model(self, version: str) -> ModelRecord:
        """Make `version` the only active one of its modality (rollback too)."""
        with self._writes.begin() as session:
            return _activate(session, version)

    def active_model(self, modality: Modality) -> ModelRecord | None:
        statement = select(ModelVersion).where(
            ModelVersion.modality == modality, ModelVersion.active.is_(True)
        )
        with self._reads.begin() as session:
            row = session.scalars(statement).one_or_none()
            return None if row is None else _record(row, ModelRecord)

    def get_model(self, version: str) -> ModelRecord | None:
        with self._reads.begin() as session:
            row = session.get(ModelVersion, version)
            return None if row is None else _record(row, ModelRecord)

    def list_models(self, modality: Modality | None = None) -> list[ModelRecord]:
        """Newest first; versions created in the same instant order by number."""
        statement = select(ModelVersion)
        if modality is not None:
            statement = statement.where(ModelVersion.modality == modality)
        with self._reads.begin() as session:
            models = [_record(row, ModelRecord) for row in session.scalars(statement)]
        return sorted(models, key=lambda m: (m.created_at, version_number(m.version)), reverse=True)

    # model artifacts, by sha256

    def put_artifact(self, data: bytes) -> str:
        """Store a model file's bytes (a no-op when they are stored already); returns the sha256."""
        with self._writes.begin() as session:
            return self._insert_artifact(session, data)

    def artifact(self, sha256: str) -> bytes | None:
        with self._reads.begin() as session:
            return session.scalars(
                select(ModelArtifact.data).where(ModelArtifact.sha256 == sha256)
            ).one_or_none()

    def drop_artifacts(self, versions: Sequence[str]) -> None:
        """Drop these versions' artifact bytes and the file paths they were registered with,
        in one transaction: they stay listed but nothing can load or publish them again."""
        with self._writes.begin() as session:
            for chunk in _id_chunks(versions):
                hashes = select(ModelVersion.artifact_sha256).where(ModelVersion.version.in_(chunk))
                session.execute(delete(ModelArtifact).where(ModelArtifact.sha256.in_(hashes)))
                session.execute(
                    update(ModelVersion)
                    .where(ModelVersion.version.in_(chunk))
                    .values(artifact_path="")
                )

    def missing_artifacts(self, hashes: Iterable[str]) -> set[str]:
        """Those of `hashes` whose bytes the store does not hold."""
        candidates = sorted(set(hashes))
        present: set[str] = set()
        with self._reads.begin() as session:
            for chunk in _id_chunks(candidates):
                statement = select(ModelArtifact.sha256).where(ModelArtifact.sha256.in_(chunk))
                present.update(session.scalars(statement))
        return set(candidates) - present

    def _insert_artifact(self, session: Session, data: bytes) -> str:
        sha256 = _sha256(data)
        # Content-addressed: bytes already stored under this hash are these bytes.
        statement = (
            self._upsert_insert(ModelArtifact.__table__)
            .values(sha256=sha256, data=data, stored_at=utc_now())
            .on_conflict_do_nothing(index_elements=["sha256"])
        )
        session.execute(statement)
        return sha256

    # training runs

    def create_run(self, modality: Modality, trigger: RunTrigger) -> TrainingRunRecord:
        record = TrainingRunRecord(
            run_id=str(uuid4()), modality=Modality(modality), trigger=RunTrigger(trigger)
        )
        with self._writes.begin() as session:
            session.add(TrainingRun(**_values(record)))
        return record

    def update_run(self, run_id: str, **changes: Any) -> TrainingRunRecord:
        """Change a run's progress fields.

        Moving to `running` stamps `started_at` and to a final status stamps
        `finished_at`, unless the caller passes them, so no caller forgets.
        """
        unknown = changes.keys() - _RUN_UPDATABLE_FIELDS
        if unknown:
            raise TypeError(f"training runs have no updatable fields {sorted(unknown)}")
        if "status" in changes:
            changes["status"] = RunStatus(changes["status"])
        if not 0.0 <= changes.get("progress", 0.0) <= 1.0:
            raise ValueError(f"progress {changes['progress']} is outside 0..1")
        with self._writes.begin() as session:
            run = session.get(TrainingRun, run_id)
            if run is None:
                raise RecordNotFoundError(f"unknown training run {run_id!r}")
            status = changes.get("status")
            if status is RunStatus.RUNNING and run.started_at is None:
                changes.setdefault("started_at", utc_now())
            if status is not None and status.finished:
                changes.setdefault("finished_at", utc_now())
            for name, value in changes.items():
                setattr(run, name, value)
            session.flush()
            return _record(run, TrainingRunRecord)

    def get_run(self, run_id: str) -> TrainingRunRecord | None:
        with self._reads.begin() as session:
            row = session.get(TrainingRun, run_id)
            return None if row is None else _record(row, TrainingRunRecord)

    def list_runs(self, modality: Modality | None = None) -> list[TrainingRunRecord]:
        """Newest first."""
        statement = select(TrainingRun).order_by(TrainingRun.created_at.desc(), TrainingRun.run_id)
        if modality is not None:
            statement = statement.where(TrainingRun.modality == modality)
        with self._reads.begin() as session:
            return [_record(row, TrainingRunRecord) for row in session.scalars(statement)]


def _activate(session: Session, version: str) -> ModelRecord:
    target = session.get(ModelVersion, version)
    if target is None:
        raise RecordNotFoundError(f"unknown model version {version!r}")
    modality = target.modality
    # Locking every version of the modality, in one order, serialises concurrent
    # activations on PostgreSQL (without it they deadlock); SQLite's write
    # transaction already holds the whole database.
    session.execute(
        select(ModelVersion.version)
        .where(ModelVersion.modality == modality)
        .order_by(ModelVersion.version)
        .with_for_update()
    )
    # Deactivate before activating: the partial unique index checks each statement.
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.modality == modality, ModelVersion.version != version)
        .values(active=False)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.version == version)
        .values(active=True)
        .execution_options(synchronize_session=False)
    )
    return _record(session.get_one(ModelVersion, version, populate_existing=True), ModelRecord)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _values(record: ItemRecord | ModelRecord | TrainingRunRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _record(row: Base, record_type: type[RecordT]) -> RecordT:
    return record_type(**{f.name: getattr(row, f.name) for f in fields(record_type)})
