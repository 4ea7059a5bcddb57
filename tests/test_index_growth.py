"""Index growth on real FAISS: flat while small, compressed (IVF-SQ6) past the threshold, built
without pausing.

The vectors are clustered like real embeddings (identities as tight groups on
the unit sphere): uniform random vectors are a worst case for IVF that no
embedding model produces.
"""

import faiss
import numpy as np
import pytest

from pipeline.index import growth
from pipeline.index.snapshot import Snapshot, read_latest_snapshot, write_snapshot
from pipeline.index.vector_index import VectorIndex

DIM = 64
CLUSTERS = 400
THRESHOLD = 20_000
BUILD_TIMEOUT_S = 120


def clustered(rng: np.random.Generator, n: int, spread: float = 0.35) -> np.ndarray:
    """Around the same identities whatever `rng`: later items are more of the same people."""
    centres = np.random.default_rng(0).normal(size=(CLUSTERS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, CLUSTERS, n)]
    x = x + rng.normal(scale=spread / np.sqrt(DIM), size=x.shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def grown(rng: np.random.Generator, n: int = THRESHOLD) -> tuple[VectorIndex, np.ndarray]:
    index = VectorIndex(DIM, ivf_threshold=THRESHOLD)
    vectors = clustered(rng, n)
    index.upsert([f"i{j}" for j in range(n)], vectors, [f"c{j % 7}" for j in range(n)])
    index.wait_for_growth(BUILD_TIMEOUT_S)
    return index, vectors


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_small_indexes_stay_flat(rng):
    index = VectorIndex(DIM, ivf_threshold=THRESHOLD)
    index.upsert([f"i{j}" for j in range(100)], clustered(rng, 100), [None] * 100)
    never = VectorIndex(DIM, ivf_threshold=0)
    never.upsert([f"i{j}" for j in range(THRESHOLD)], clustered(rng, THRESHOLD), [None] * THRESHOLD)
    never.wait_for_growth()
    assert index.kind == "flat" and never.kind == "flat"


# A compressed index gives vectors back from 6-bit codes of their residuals.
CODE_ERROR = 0.01


def test_compressed_recall_is_close_to_exact_search(rng):
    index, vectors = grown(rng)
    assert index.kind == "ivf-sq6"
    exact = faiss.IndexFlatL2(DIM)
    exact.add(vectors)
    queries = clustered(rng, 500)
    _, truth = exact.search(queries, 10)
    hits = index.search(queries, 10)
    found = [{int(h.item_id[1:]) for h in row} for row in hits]
    recall = np.mean([len(f & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95, f"recall@10 {recall:.3f}"
    # A label filter searches every list.
    labelled = index.search(queries[:5], 3, label="c3")
    assert all(h.label == "c3" for row in labelled for h in row)
    assert all(len(row) == 3 for row in labelled)


def test_upserts_and_deletes_during_the_build_all_land(rng):
    index = VectorIndex(DIM, ivf_threshold=THRESHOLD)
    live = {f"i{j}": v for j, v in enumerate(clustered(rng, THRESHOLD))}
    index.upsert(list(live), np.stack(list(live.values())), [None] * len(live))
    deleted: set[str] = set()
    during_build = step = 0
    while index.kind == "flat" or step < 20:
        ids = [f"i{(step * 37 + j) % THRESHOLD}" for j in range(5)]
        ids += [f"new{step}-{j}" for j in range(5)]
        vectors = clustered(rng, len(ids))
        index.upsert(ids, vectors, [None] * len(ids))
        live.update(zip(ids, vectors, strict=True))
        gone = [f"i{(step * 53 + 11) % THRESHOLD}", f"new{step}-0"]
        index.delete(gone)
        for item_id in gone:
            live.pop(item_id, None)
        deleted = (deleted | set(gone)) - set(live)
        during_build += index.kind == "flat"
        step += 1
    index.wait_for_growth(BUILD_TIMEOUT_S)
    assert index.kind == "ivf-sq6"
    assert during_build > 0, "no change landed while the compressed index was being built"

    assert len(index) == len(live)
    for item_id in deleted:
        assert item_id not in index and index.vector(item_id) is None
    for item_id, vector in live.items():
        np.testing.assert_allclose(index.vector(item_id), vector, atol=CODE_ERROR)
    for item_id in list(live)[-200:]:
        hit = index.search(live[item_id][None], 1)[0][0]
        assert hit.item_id == item_id and hit.squared_l2 < DIM * CODE_ERROR**2
    stored = growth.from_blob(index.to_state()["faiss"])
    assert stored.ntotal == len(index), "one FAISS entry per item, no leftovers"


def test_a_compressed_index_round_trips_through_a_snapshot(rng, tmp_path):
    index, vectors = grown(rng)
    index.delete(["i5"])
    write_snapshot(tmp_path, Snapshot("face-v1", {0: 42}, index))
    restored = read_latest_snapshot(tmp_path).index
    assert restored.kind == "ivf-sq6" and len(restored) == len(index)
    queries = clustered(rng, 20)
    assert restored.search(queries, 5) == index.search(queries, 5)
    np.testing.assert_allclose(restored.vector("i9"), vectors[9], atol=CODE_ERROR)
    assert restored.vector("i5") is None
    assert restored.delete(["i9"]) == 1 and restored.vector("i9") is None
    restored.upsert(["i9"], vectors[9][None], ["again"])
    assert restored.search(vectors[9][None], 1)[0][0].item_id == "i9"


def test_the_build_is_trained_by_the_index_trainer_on_a_sample_of_what_it_holds(rng):
    asked: list[tuple[np.ndarray, int]] = []

    def trainer(sample: np.ndarray, lists: int) -> faiss.IndexIVFScalarQuantizer:
        asked.append((sample, lists))
        return growth.train(sample, lists)

    index = VectorIndex(DIM, ivf_threshold=THRESHOLD)
    index.trainer = trainer
    vectors = clustered(rng, THRESHOLD)
    index.upsert([f"i{j}" for j in range(THRESHOLD)], vectors, [None] * THRESHOLD)
    index.wait_for_growth(BUILD_TIMEOUT_S)
    [(sample, lists)] = asked
    assert lists == growth.ivf_lists(THRESHOLD) == 512
    # Fewer than k-means would sample: all of them.
    np.testing.assert_array_equal(sample, vectors)
    assert index.kind == "ivf-sq6" and len(index) == THRESHOLD


def test_a_training_sample_is_as_many_distinct_rows_as_k_means_would_use(rng):
    vectors = clustered(rng, 10_000)
    sample = growth.training_sample(vectors, 100)
    assert sample.shape == (100 * growth.TRAIN_POINTS_PER_LIST, DIM) == (6_400, DIM)
    rows = np.flatnonzero(np.isin(vectors[:, 0], sample[:, 0]))
    assert len(rows) == 6_400
    np.testing.assert_array_equal(vectors[rows], sample)


def test_a_vector_by_key_is_the_decoded_entry_of_its_list_and_a_missing_key_raises(rng):
    vectors = clustered(rng, 5_000)
    keys = rng.choice(2**62, len(vectors), replace=False).astype(np.int64)
    ivf = growth.build_compressed(vectors, keys)
    ivf.remove_ids(keys[:10])
    stored_keys, decoded = growth.contents(ivf)
    for key, row in list(zip(stored_keys.tolist(), decoded, strict=True))[::97]:
        np.testing.assert_array_equal(growth.vector(ivf, key), row)
    for key in [int(keys[3]), int(keys.max()) + 1]:
        with pytest.raises(KeyError):
            growth.vector(ivf, key)
