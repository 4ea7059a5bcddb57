"""The index holder's rules, on real FAISS and a real SQLite store: what it resumes, which
replayed operations it applies, and how it switches model versions."""

import time

import faiss
import numpy as np
import pytest
import ray

from pipeline.index import growth
from pipeline.index.holder import ApplyOutcome, IndexHolder, IndexUpdate, StaleVersionError
from pipeline.index.training import train_in_a_task
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import ModelRecord
from schemas.items import Modality

DIM = 8
APPLIED = ApplyOutcome.APPLIED
# face-v3 embeds wider than the others, as a model of newer code may (faces: 128 -> 256).
WIDTHS = {"face-v1": DIM, "face-v2": DIM, "face-v3": 2 * DIM}


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, snapshot_interval_s=3600)


@pytest.fixture
def store(settings: Settings) -> MetadataStore:
    store = MetadataStore.from_settings(settings)
    for version, width in WIDTHS.items():
        # The holder reads only the version and the embedding size; no artifact is loaded.
        store.register_model(
            ModelRecord(
                version=version,
                modality=Modality.FACE,
                config={"encoder": {"embedding_dim": width}},
                threshold=0.5,
                energy="euclidean",
                artifact_path="unused",
                artifact_sha256="unused",
                active=version == "face-v1",
            )
        )
    return store


def upserts(
    ids: list[str], vectors: dict[str, np.ndarray], offset: int, start: int | None = None
) -> IndexUpdate:
    """Upserts from partition 0 at consecutive offsets from `offset`."""
    return IndexUpdate(
        upsert_ids=ids,
        vectors=vectors,
        labels=[f"label-{i}" for i in ids],
        upsert_positions=[(0, offset + n) for n in range(len(ids))],
        delete_ids=[],
        delete_positions=[],
        start_offsets={0: offset if start is None else start},
        offsets={0: offset + len(ids)},
    )


def deletes(ids: list[str], offset: int) -> IndexUpdate:
    return IndexUpdate(
        upsert_ids=[],
        vectors={},
        labels=[],
        upsert_positions=[],
        delete_ids=ids,
        delete_positions=[(0, offset + n) for n in range(len(ids))],
        start_offsets={0: offset},
        offsets={0: offset + len(ids)},
    )


def test_a_holder_resumes_its_checkpoint_only_for_the_active_model(settings, store, rng):
    holder = IndexHolder(settings, Modality.FACE)
    assert holder.apply(upserts(["a", "b"], {"face-v1": unit(rng, 2)}, 0)).outcome is APPLIED
    assert holder.apply(deletes(["a"], 2)).outcome is APPLIED
    assert holder.snapshot() is not None

    same = IndexHolder(settings, Modality.FACE)
    assert same.offsets() == {0: 3} and same.contains(["a", "b"]) == [False, True]
    # A new active model makes every stored vector stale: start empty, replay from the start.
    store.activate_model("face-v2")
    other = IndexHolder(settings, Modality.FACE)
    assert other.offsets() == {} and other.size() == 0


def test_a_search_by_id_is_answered_by_the_version_asked_for_or_refused(settings, store, rng):
    holder = IndexHolder(settings, Modality.FACE)
    vectors = unit(rng, 3)
    assert holder.apply(upserts(["a", "b", "c"], {"face-v1": vectors}, 0)).outcome is APPLIED
    vector, hits = holder.search_by_id("face-v1", "b", 2)
    np.testing.assert_allclose(vector, vectors[1])
    assert len(hits) == 2 and hits[0].item_id == "b"
    assert holder.search_by_id("face-v1", "gone", 2) is None
    with pytest.raises(StaleVersionError):
        holder.search_by_id("face-v2", "b", 2)


def test_commits_may_only_follow_a_durable_checkpoint(settings, store, rng):
    holder = IndexHolder(settings, Modality.FACE)
    result = holder.apply(upserts(["a"], {"face-v1": unit(rng, 1)}, 0))
    assert result.outcome is APPLIED and result.durable.offsets == {}
    holder.snapshot()
    assert holder.apply(upserts(["b"], {"face-v1": unit(rng, 1)}, 1)).durable.offsets == {0: 1}


def test_a_batch_after_a_gap_is_refused_so_the_writer_replays(settings, store, rng):
    holder = IndexHolder(settings, Modality.FACE)
    result = holder.apply(upserts(["a"], {"face-v1": unit(rng, 1)}, 5))
    assert result.outcome is ApplyOutcome.REPLAY and holder.size() == 0


def test_a_stale_replay_never_reverts_newer_state(settings, store, rng):
    """A writer that lost its partition may still send a batch the new owner already
    applied (and went past): only operations at or after the holder's offsets count."""
    holder = IndexHolder(settings, Modality.FACE)
    old, new = unit(rng, 2)
    holder.apply(upserts(["a"], {"face-v1": old[None]}, 0))
    holder.apply(upserts(["a"], {"face-v1": new[None]}, 1))
    holder.apply(deletes(["gone"], 2))
    late = holder.apply(upserts(["a", "gone"], {"face-v1": unit(rng, 2)}, 0))
    assert late.outcome is APPLIED and holder.size() == 1 and holder.offsets() == {0: 3}
    vector, label = holder.vector("face-v1", "a")
    np.testing.assert_allclose(vector, new)
    assert label == "label-a" and holder.vector("face-v1", "gone") is None


def test_a_build_asks_for_every_version_and_switches_at_once(settings, store, rng):
    holder = IndexHolder(settings, Modality.FACE)
    holder.apply(upserts(["a", "b", "c"], {"face-v1": unit(rng, 3)}, 0))
    holder.begin_build("face-v2", DIM)

    # Writers that only embedded for the active version are told to embed for both.
    refused = holder.apply(upserts(["d"], {"face-v1": unit(rng, 1)}, 3))
    assert refused.outcome is ApplyOutcome.EMBED_AGAIN
    assert refused.versions == ["face-v1", "face-v2"]
    live = unit(rng, 1)
    both = {"face-v1": unit(rng, 1), "face-v2": live}
    assert holder.apply(upserts(["b"], both, 3)).outcome is APPLIED
    holder.delete(["c"])

    # The backfill from stored payloads loses to whatever the stream did meanwhile.
    added = holder.backfill("face-v2", ["a", "b", "c"], unit(rng, 3), ["x", "y", "z"])
    assert added == 1
    assert holder.search("face-v1", unit(rng, 1), 5)  # still v1 until the switch

    assert holder.activate("face-v2") == "face-v1"
    assert holder.active_version() == "face-v2" and holder.versions() == ["face-v2"]
    assert holder.contains(["a", "b", "c"]) == [True, True, False]
    np.testing.assert_allclose(holder.vector("face-v2", "b")[0], live[0])
    with pytest.raises(StaleVersionError):
        holder.search("face-v1", unit(rng, 1), 5)
    # The switch is checkpointed with the new version.
    store.activate_model("face-v2")
    assert IndexHolder(settings, Modality.FACE).size() == 2


def test_a_quiet_stream_is_checkpointed_within_the_interval(tmp_path, store, rng):
    """Changes followed by no more batches are made durable once the interval has passed,
    and a restarted holder resumes after them instead of replaying them."""
    settings = Settings(state_dir=tmp_path, snapshot_interval_s=1, snapshot_every_updates=10**6)
    holder = IndexHolder(settings, Modality.FACE)
    applied = holder.apply(upserts(["a", "b"], {"face-v1": unit(rng, 2)}, 0))
    assert applied.durable.offsets == {}
    assert holder.make_durable_if_due().offsets == {}  # not due yet
    time.sleep(1.1)
    assert holder.make_durable_if_due().offsets == {0: 2}
    restarted = IndexHolder(settings, Modality.FACE)
    assert restarted.offsets() == {0: 2}
    assert restarted.contains(["a", "b"]) == [True, True]


def _built_by(holder: IndexHolder) -> tuple[object, int]:
    """Run in the holder's actor: who trains its index, once the build is in, and FAISS's
    BLAS switch-over batch size in that process."""
    index = holder._indexes[holder.active_version()]
    index.wait_for_growth(120)
    return index.trainer, faiss.cvar.distance_compute_blas_threshold


@pytest.mark.usefixtures("stack")
def test_a_holder_actor_grows_its_index_with_training_in_a_task_and_never_runs_blas(
    settings, store, rng
):
    items = 2_000
    grows = settings.model_copy(update={"index_ivf_threshold": items})
    holder = ray.remote(IndexHolder).options(num_cpus=0).remote(grows, Modality.FACE)
    try:
        ids = [f"f{j}" for j in range(items)]
        vectors = unit(rng, items)
        ray.get(holder.apply.remote(upserts(ids, {"face-v1": vectors}, 0)))
        trainer, blas_from = ray.get(holder.__ray_call__.remote(_built_by))
        assert trainer is train_in_a_task and blas_from == growth.NEVER
        assert ray.get(holder.stats.remote())["index_kind"] == "ivf-sq6"
        [hits] = ray.get(holder.search.remote("face-v1", vectors[7:8], 1))
        assert [h.item_id for h in hits] == ["f7"]
    finally:
        ray.kill(holder)
