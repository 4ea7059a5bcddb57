"""The compressed index kind on real FAISS: IVF-SQ8 candidates re-ranked exactly from float16
copies, still addressed, deleted and reconstructed by id, and carried through states."""

import faiss
import numpy as np
import pytest

from pipeline.index import growth
from pipeline.index.refined import RefinedIVF, RefineStore
from pipeline.index.vector_index import VectorIndex

DIM = 64
ITEMS = 12_000
PEOPLE = 1_200
LABELS = 5
# Against exact search on `people()`: measured, less a margin for FAISS versions.
MIN_RECALL_AT_10 = 0.97
MIN_RECALL_AT_1 = 0.99
BUILD_TIMEOUT_S = 60


def people(seed: int, n: int, centres: int = PEOPLE) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors, person of each): people as tight groups around centres on the sphere."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(0).normal(size=(centres, DIM)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    who = rng.integers(0, centres, n)
    x = middle[who] + rng.normal(scale=0.4 / np.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), who


def stored(vectors: np.ndarray) -> np.ndarray:
    return vectors.astype(np.float16).astype(np.float32)


@pytest.fixture(scope="module")
def grown_state() -> dict:
    """A VectorIndex that grew into the compressed kind, as a state each test copies."""
    vectors, who = people(1, ITEMS)
    index = VectorIndex(DIM, ivf_threshold=ITEMS)
    labels = [f"l{p % LABELS}" for p in who]
    index.upsert([f"i{j}" for j in range(ITEMS)], vectors, labels)
    index.wait_for_growth(BUILD_TIMEOUT_S)
    assert index.kind == "ivf-sq8"
    return index.to_state()


@pytest.fixture
def grown(grown_state: dict) -> VectorIndex:
    return VectorIndex.from_state(grown_state)


def test_the_store_finds_ids_through_appends_out_of_order_adds_and_compaction():
    store = RefineStore(4)
    vectors = np.arange(40, dtype=np.float32).reshape(10, 4) / 7
    store.add(np.array([2, 4, 6]), vectors[:3])
    store.add(np.array([8, 10]), vectors[3:5])
    store.add(np.array([5, 1]), vectors[5:7])
    assert len(store) == 7
    np.testing.assert_array_equal(store.get(np.array([1, 5, 10])), stored(vectors[[6, 5, 4]]))
    assert store.rows(np.array([3, 11, -1])).tolist() == [-1, -1, -1]
    assert store.remove(np.array([2, 4, 6, 99])) == 3
    assert store.remove(np.array([2])) == 0
    assert len(store) == 4 and store.live()[0].tolist() == [1, 5, 8, 10]
    with pytest.raises(KeyError):
        store.get(np.array([4]))
    d2 = store.squared_l2(vectors[4:5], np.array([[10, 4, -1, 8]]))
    assert d2[0, 0] == pytest.approx(np.square(stored(vectors[4:5]) - vectors[4]).sum())
    assert np.isinf(d2[0, 1:3]).all() and np.isfinite(d2[0, 3])


def test_recall_at_10_against_exact_search_on_clustered_vectors(grown):
    vectors, _ = people(1, ITEMS)
    queries, _ = people(2, 500)
    _, truth = faiss.knn(queries, vectors, 10)
    found = [[int(h.item_id[1:]) for h in row] for row in grown.search(queries, 10)]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= MIN_RECALL_AT_10, f"recall@10 {recall:.3f}"
    assert np.mean([f[0] == t[0] for f, t in zip(found, truth, strict=True)]) >= MIN_RECALL_AT_1


def test_deleted_ids_never_come_back_and_upserted_ids_appear_once(grown):
    vectors, _ = people(1, ITEMS)
    queries, _ = people(3, 300)
    _, nearest = faiss.knn(queries, vectors, 1)
    gone = sorted({f"i{j}" for j in nearest[:, 0]} | {f"i{j}" for j in range(0, ITEMS, 97)})
    assert grown.delete(gone) == len(gone)
    probes = np.concatenate([queries, vectors[[int(i[1:]) for i in gone]]])
    assert not {h.item_id for row in grown.search(probes, 10) for h in row} & set(gone)
    assert all(grown.vector(i) is None for i in gone)

    moved = [f"i{j}" for j in range(1, 400, 4)]
    new_vectors, _ = people(4, len(moved))
    grown.upsert(moved, new_vectors, ["moved"] * len(moved))
    for item_id, vector, row in zip(moved, new_vectors, grown.search(new_vectors, 10), strict=True):
        assert [h.item_id for h in row].count(item_id) == 1
        assert row[0].item_id == item_id and row[0].squared_l2 < 1e-5
        np.testing.assert_array_equal(grown.vector(item_id), stored(vector[None])[0])
    assert len(grown) == ITEMS - len(set(gone) - set(moved))
    assert growth.from_blob(grown.to_state()["faiss"]).ntotal == len(grown)


def test_a_label_filter_is_exact_over_the_stored_vectors(grown):
    queries, _ = people(5, 20)
    hits = grown.search(queries, 5, label="l3")
    state = grown.to_state()
    mine = [i for i, label in state["labels"].items() if label == "l3"]
    candidates = np.stack([grown.vector(i) for i in mine])
    _, exact = faiss.knn(queries, candidates, 5)
    assert [[h.item_id for h in row] for row in hits] == [[mine[j] for j in r] for r in exact]


def test_state_round_trip_keeps_answers_and_accepts_changes(grown):
    state = grown.to_state()
    assert isinstance(state["faiss"], np.ndarray) and RefinedIVF.is_blob(state["faiss"])
    restored = VectorIndex.from_state(state)
    queries, _ = people(6, 50)
    assert restored.kind == "ivf-sq8" and len(restored) == len(grown)
    assert restored.search(queries, 10) == grown.search(queries, 10)
    np.testing.assert_array_equal(restored.vector("i7"), grown.vector("i7"))
    assert restored.delete(["i7"]) == 1 and restored.vector("i7") is None
    restored.upsert(["i7", "new"], queries[:2], ["a", "b"])
    assert [restored.search(queries[j : j + 1], 1)[0][0].item_id for j in (0, 1)] == ["i7", "new"]
    again = VectorIndex.from_state(restored.to_state())
    assert again.search(queries, 10) == restored.search(queries, 10)


def test_an_ivf_flat_state_from_before_still_loads_and_grows_into_the_compressed_kind():
    vectors, _ = people(7, 4_000, centres=400)
    flat = VectorIndex(DIM, ivf_threshold=0)
    flat.upsert([f"i{j}" for j in range(len(vectors))], vectors, [None] * len(vectors))
    state = flat.to_state()
    old = faiss.index_factory(DIM, "IVF64,Flat")
    old.train(vectors)
    old.set_direct_map_type(faiss.DirectMap.Hashtable)
    old.add_with_ids(vectors, np.asarray(list(state["ids"].values()), dtype=np.int64))
    old.nprobe = 64
    state |= {"faiss": faiss.serialize_index(old), "ivf_threshold": 1_000, "build_at": 4_010}
    loaded = VectorIndex.from_state(state)
    assert loaded.kind == "ivf"
    np.testing.assert_array_equal(loaded.vector("i3"), vectors[3])
    assert loaded.search(vectors[3:4], 1)[0][0].item_id == "i3"
    more, _ = people(8, 10, centres=400)
    loaded.upsert([f"n{j}" for j in range(10)], more, [None] * 10)
    loaded.wait_for_growth(BUILD_TIMEOUT_S)
    assert loaded.kind == "ivf-sq8" and len(loaded) == 4_010
    assert loaded.search(more[:1], 1)[0][0].item_id == "n0"
