"""The metadata store on SQLite and PostgreSQL (see tests/fixtures_db.py)."""

import _sqlite3
import ctypes
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError

from pipeline.store import (
    ItemRecord,
    MetadataStore,
    ModelRecord,
    RecordNotFoundError,
    RunStatus,
    RunTrigger,
    VersionExistsError,
)
from pipeline.store.engine import SQLITE_BUSY_TIMEOUT_MS, make_engine, normalize_url
from schemas.items import Modality

FACE, AUDIO = Modality.FACE, Modality.AUDIO
T0 = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


@pytest.fixture
def store(database_url):
    metadata = MetadataStore(database_url)
    yield metadata
    metadata.close()


def item(item_id, modality=FACE, offset=0, **overrides):
    values = {
        "modality": modality,
        "item_id": item_id,
        "label": item_id.split("/")[1] if item_id.count("/") == 2 else None,
        "payload_sha256": f"sha-{item_id}-{offset}",
        "content_type": "image/x-portable-graymap",
        "source_topic": f"twinstream.{modality}",
        "source_partition": 1,
        "source_offset": offset,
        "produced_at": T0,
    }
    return ItemRecord(**(values | overrides))


def model(version, modality=FACE, created_at=T0, active=False):
    return ModelRecord(
        version=version,
        modality=modality,
        created_at=created_at,
        config={"embedding_dim": 64, "layers": [32, 64]},
        metrics={"eer": 0.152, "auc": 0.91},
        threshold=0.73,
        energy="euclidean",
        artifact_path=f"models/{version}.pt",
        artifact_sha256=f"sha-{version}",
        active=active,
    )


def test_upsert_replaces_the_item_with_the_newest_version(store):
    store.upsert_items([item("orl/s7/3", offset=10), item("orl/s7/4", offset=11)])
    store.upsert_items([item("orl/s7/3", offset=42, label="s8")])

    assert store.count_items(FACE) == 2
    replaced = store.get_item(FACE, "orl/s7/3")
    assert (replaced.source_offset, replaced.label, replaced.payload_sha256) == (
        42,
        "s8",
        "sha-orl/s7/3-42",
    )


def test_upsert_batch_with_a_repeated_key_keeps_the_last(store):
    store.upsert_items([item("orl/s1/1", offset=1), item("orl/s1/1", offset=2, label=None)])

    assert store.count_items(FACE) == 1
    kept = store.get_item(FACE, "orl/s1/1")
    assert (kept.source_offset, kept.label) == (2, None)


def test_same_id_in_two_modalities_are_two_items(store):
    store.upsert_items([item("x/a/1"), item("x/a/1", modality=AUDIO)])

    assert store.count_items(FACE) == store.count_items(AUDIO) == 1
    assert store.get_item(AUDIO, "x/a/1").modality is AUDIO


def test_delete_counts_only_existing_items_of_that_modality(store):
    store.upsert_items([item(f"orl/s1/{shot}") for shot in range(1, 5)])
    store.upsert_items([item("orl/s1/1", modality=AUDIO)])

    assert store.delete_items(FACE, ["orl/s1/1", "orl/s1/2", "orl/s1/2", "missing"]) == 2
    assert store.get_item(FACE, "orl/s1/1") is None
    assert store.get_item(AUDIO, "orl/s1/1") is not None
    assert store.count_items(FACE) == 2
    assert store.delete_items(FACE, []) == 0


def test_delete_many_ids_at_once(store):
    store.upsert_items([item(f"bulk/s1/{n}") for n in range(1200)])

    assert store.delete_items(FACE, [f"bulk/s1/{n}" for n in range(1100)]) == 1100
    assert store.count_items(FACE) == 100


def test_lookups_of_every_count_of_ids_keep_sqlites_memory_bounded(tmp_path):
    # Ingest asks for a batch's ids; memory must not grow with how many counts it has seen.
    used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    used.restype = ctypes.c_int64
    store = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    store.upsert_items([item(f"bulk/s1/{n}") for n in range(400)])
    ids = [f"bulk/s1/{n}" for n in range(400)]
    assert store.payload_hashes(FACE, ids[:1]) == {"sha-bulk/s1/0-0"}
    before = used()
    for count in range(1, 401):
        assert len(store.payload_hashes(FACE, ids[:count])) == count
    # Each count its own statement held 6 MB.
    assert used() - before < 1_000_000
    store.close()


def test_training_needs_a_label_and_a_payload_rebuilding_a_payload(store):
    store.upsert_items(
        [
            item("orl/s2/1"),
            item("orl/s1/1"),
            item("orl/s1/2", label=None),
            item("orl/s1/3", payload_sha256=None),
            item("orl/s3/1", modality=AUDIO),
        ]
    )

    labelled = store.items_with_payload(FACE, labelled_only=True)
    assert [(r.item_id, r.label) for r in labelled] == [("orl/s1/1", "s1"), ("orl/s2/1", "s2")]
    assert all(isinstance(r, ItemRecord) for r in labelled)
    retained = store.items_with_payload(FACE)
    assert [r.item_id for r in retained] == ["orl/s1/1", "orl/s1/2", "orl/s2/1"]


def test_the_training_window_is_the_newest_labelled_items(store):
    store.upsert_items(
        [item(f"orl/s{n}/1", indexed_at=T0 + timedelta(minutes=n), offset=n) for n in (3, 1, 4, 2)]
        + [item("orl/s9/1", label=None, indexed_at=T0 + timedelta(hours=1))]
    )

    window = store.items_with_payload(FACE, labelled_only=True, newest=2)

    assert [r.item_id for r in window] == ["orl/s3/1", "orl/s4/1"]
    assert len(store.items_with_payload(FACE, labelled_only=True, newest=10)) == 4


def test_version_numbers_count_up_per_modality(store):
    assert store.next_version(FACE) == "face-v1"
    store.register_model(model("face-v1"))
    assert store.next_version(FACE) == "face-v2"
    assert store.next_version(AUDIO) == "audio-v1"

    # Numeric, not lexical: v10 follows v9.
    store.register_model(model("face-v9"))
    store.register_model(model("face-v10"))
    assert store.next_version(FACE) == "face-v11"


def test_a_raced_version_name_is_rejected_not_overwritten(store):
    first, second = store.next_version(FACE), store.next_version(FACE)
    assert first == second == "face-v1"
    store.register_model(model(first))

    with pytest.raises(VersionExistsError):
        store.register_model(model(second, created_at=T0 + timedelta(hours=1)))
    assert store.get_model("face-v1").created_at == T0
    assert store.next_version(FACE) == "face-v2"


def test_activation_keeps_exactly_one_active_model_per_modality(store):
    store.register_model(model("face-v1", active=True))
    store.register_model(model("face-v2"))
    store.register_model(model("audio-v1", modality=AUDIO, active=True))
    assert store.active_model(FACE).version == "face-v1"

    activated = store.activate_model("face-v2")
    assert activated.active and activated.version == "face-v2"
    assert store.active_model(FACE).version == "face-v2"
    assert [m.version for m in store.list_models(FACE) if m.active] == ["face-v2"]

    # Rollback to the older version, and activating twice changes nothing.
    store.activate_model("face-v1")
    store.activate_model("face-v1")
    assert [m.version for m in store.list_models(FACE) if m.active] == ["face-v1"]
    assert store.active_model(AUDIO).version == "audio-v1"


def test_registering_an_active_model_takes_over(store):
    store.register_model(model("face-v1", active=True))
    registered = store.register_model(model("face-v2", active=True))

    assert registered.active
    assert store.active_model(FACE).version == "face-v2"
    assert not store.get_model("face-v1").active


def test_unknown_versions(store):
    assert store.active_model(FACE) is None
    assert store.get_model("face-v7") is None
    with pytest.raises(KeyError, match="face-v7"):
        store.activate_model("face-v7")


def test_models_are_listed_newest_first(store):
    store.register_model(model("face-v1", created_at=T0))
    store.register_model(model("audio-v1", modality=AUDIO, created_at=T0 + timedelta(minutes=1)))
    store.register_model(model("face-v2", created_at=T0 + timedelta(minutes=2)))
    store.register_model(model("face-v3", created_at=T0 + timedelta(minutes=2)))

    assert [m.version for m in store.list_models()] == [
        "face-v3",
        "face-v2",
        "audio-v1",
        "face-v1",
    ]
    assert [m.version for m in store.list_models(AUDIO)] == ["audio-v1"]
    stored = store.get_model("face-v2")
    assert stored == model("face-v2", created_at=T0 + timedelta(minutes=2))


def test_training_run_lifecycle(store):
    run = store.create_run(FACE, RunTrigger.API)
    assert (run.status, run.progress, run.started_at, run.promoted) == (
        RunStatus.QUEUED,
        0.0,
        None,
        None,
    )
    assert store.get_run(run.run_id) == run

    running = store.update_run(run.run_id, status="running", phase="training", progress=0.25)
    assert running.status is RunStatus.RUNNING and running.phase == "training"
    assert running.started_at is not None and running.finished_at is None

    metrics = {"candidate": {"eer": 0.12}, "incumbent": {"eer": 0.15}}
    done = store.update_run(
        run.run_id,
        status=RunStatus.SUCCEEDED,
        progress=1.0,
        data_counts={"items": 400, "identities": 40},
        metrics=metrics,
        candidate_version="face-v2",
        promoted=True,
    )
    assert done.finished_at >= done.started_at == running.started_at
    assert store.get_run(run.run_id) == done
    assert (done.metrics, done.data_counts["items"], done.promoted) == (metrics, 400, True)


def test_failed_run_keeps_its_error(store):
    run = store.create_run(AUDIO, RunTrigger.SCHEDULE)
    failed = store.update_run(run.run_id, status=RunStatus.FAILED, error="no labelled items")

    assert (failed.status, failed.error, failed.trigger) == (
        RunStatus.FAILED,
        "no labelled items",
        RunTrigger.SCHEDULE,
    )
    assert failed.finished_at is not None and failed.started_at is None


def test_update_run_rejects_bad_input(store):
    run = store.create_run(FACE, RunTrigger.CLI)

    with pytest.raises(TypeError, match="modality"):
        store.update_run(run.run_id, modality=AUDIO)
    with pytest.raises(ValueError, match="progress"):
        store.update_run(run.run_id, progress=1.5)
    with pytest.raises(ValueError):
        store.update_run(run.run_id, status="paused")
    with pytest.raises(RecordNotFoundError, match="no-such-run"):
        store.update_run("no-such-run", phase="x")
    assert store.get_run(run.run_id) == run
    assert store.get_run("no-such-run") is None


def test_runs_are_listed_newest_first(store):
    runs = [store.create_run(m, RunTrigger.CLI) for m in (FACE, AUDIO, FACE)]

    assert [r.run_id for r in store.list_runs()] == [r.run_id for r in reversed(runs)]
    assert [r.run_id for r in store.list_runs(FACE)] == [runs[2].run_id, runs[0].run_id]


def test_timestamps_round_trip_tz_aware_in_utc(store):
    india = timezone(timedelta(hours=5, minutes=30))
    produced = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=india)
    store.upsert_items([item("orl/s1/1", produced_at=produced, indexed_at=produced)])

    stored = store.get_item(FACE, "orl/s1/1")
    assert stored.produced_at == produced
    assert stored.produced_at.utcoffset() == timedelta(0)
    assert stored.indexed_at.isoformat() == "2026-03-01T06:30:00.123456+00:00"
    assert store.create_run(FACE, RunTrigger.CLI).created_at.tzinfo is not None

    with pytest.raises(StatementError, match="naive datetime"):
        store.upsert_items([item("orl/s1/2", produced_at=datetime(2026, 3, 1))])


def test_store_pickles_to_a_reconnecting_copy(store):
    store.upsert_items([item("orl/s1/1")])

    copy = pickle.loads(pickle.dumps(store))
    try:
        assert copy.get_item(FACE, "orl/s1/1") == store.get_item(FACE, "orl/s1/1")
    finally:
        copy.close()


def _write_concurrently(url: str, worker: int, rounds: int) -> int:
    """One process's share: upserts, activations and run updates interleaved."""
    store = MetadataStore(url)
    try:
        for n in range(rounds):
            store.upsert_items(
                [item("shared/s0/1", offset=n), item(f"w{worker}/s{worker}/{n}", offset=n)]
            )
            store.activate_model(f"face-v{1 + (n + worker) % 2}")
            run = store.create_run(FACE, RunTrigger.SCHEDULE)
            store.update_run(run.run_id, status=RunStatus.RUNNING, progress=n / rounds)
        return rounds
    finally:
        store.close()


def test_concurrent_writer_processes_do_not_lock_each_other_out(database_url):
    workers, rounds = 2, 25
    setup = MetadataStore(database_url)
    setup.register_model(model("face-v1", active=True))
    setup.register_model(model("face-v2"))

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        done = list(
            pool.map(
                _write_concurrently, [database_url] * workers, range(workers), [rounds] * workers
            )
        )

    assert done == [rounds] * workers
    assert setup.count_items(FACE) == 1 + workers * rounds
    assert len(setup.list_runs(FACE)) == workers * rounds
    assert sum(m.active for m in setup.list_models(FACE)) == 1
    setup.close()


def test_sqlite_engine_creates_the_directory_and_tunes_the_connection(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/deep/er/state.db")
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
            assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert (tmp_path / "deep" / "er" / "state.db").exists()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db:5432/twin",
        "postgresql://u:p@db:5432/twin",
        "postgresql+psycopg://u:p@db:5432/twin",
    ],
)
def test_postgres_urls_use_psycopg3(url):
    normalized = normalize_url(url)
    assert normalized.drivername == "postgresql+psycopg"
    assert (normalized.host, normalized.database, normalized.password) == ("db", "twin", "p")
