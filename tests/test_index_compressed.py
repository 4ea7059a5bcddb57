"""The compressed index kind on real FAISS: IVF-SQ6 searched on its codes, still addressed,
deleted and reconstructed by id, and carried through states."""

import ctypes
import ctypes.util
import math
import threading

import faiss
import numpy as np
import pytest

from pipeline.index import growth
from pipeline.index.vector_index import STATE_FORMAT, VectorIndex

DIM = 64
ITEMS = 12_000
PEOPLE = 1_200
LABELS = 5
# Issue 24's target against exact search (docs/benchmarks.md has what `people()` measures).
# Which of a person's shots is nearest moves more on 6-bit codes, so a query is judged by
# whose shot its top hit is, as on exact search.
MIN_RECALL_AT_10 = 0.95
MIN_PERSON_AT_1 = 0.99
BUILD_TIMEOUT_S = 60
# Vectors come back from 6-bit codes of their residuals (largest error measured 0.0084).
CODE_ERROR = 0.01
# What glibc's malloc_usable_size may add to a list's storage: alignment and a chunk header.
CHUNK_SLACK_BYTES = 64


def people(seed: int, n: int, centres: int = PEOPLE) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors, person of each): people as tight groups around centres on the sphere."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(0).normal(size=(centres, DIM)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    who = rng.integers(0, centres, n)
    x = middle[who] + rng.normal(scale=0.4 / np.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), who


@pytest.fixture(scope="module")
def grown_state() -> dict:
    """A VectorIndex that grew into the compressed kind, as a state each test copies."""
    vectors, who = people(1, ITEMS)
    index = VectorIndex(DIM, ivf_threshold=ITEMS)
    labels = [f"l{p % LABELS}" for p in who]
    index.upsert([f"i{j}" for j in range(ITEMS)], vectors, labels)
    index.wait_for_growth(BUILD_TIMEOUT_S)
    assert index.kind == "ivf-sq6"
    return index.to_state()


@pytest.fixture
def grown(grown_state: dict) -> VectorIndex:
    return VectorIndex.from_state(grown_state)


def test_recall_at_10_against_exact_search_on_clustered_vectors(grown):
    vectors, person = people(1, ITEMS)
    queries, asked = people(2, 500)
    _, truth = faiss.knn(queries, vectors, 10)
    found = [[int(h.item_id[1:]) for h in row] for row in grown.search(queries, 10)]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= MIN_RECALL_AT_10, f"recall@10 {recall:.3f}"
    at_1 = np.mean([person[f[0]] == p for f, p in zip(found, asked, strict=True)])
    assert at_1 >= MIN_PERSON_AT_1, f"top hit of the query's person {at_1:.3f}"


def test_a_query_probes_three_root_lists_whatever_count_a_snapshot_was_saved_with(grown):
    ivf = growth.from_blob(grown.to_state()["faiss"])
    assert (ivf.nlist, ivf.nprobe) == (307, 53)
    ivf.nprobe = 5
    assert growth.from_blob(faiss.serialize_index(ivf)).nprobe == 53


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
        assert row[0].item_id == item_id and row[0].squared_l2 < DIM * CODE_ERROR**2
        np.testing.assert_allclose(grown.vector(item_id), vector, atol=CODE_ERROR)
    assert len(grown) == ITEMS - len(set(gone) - set(moved))
    assert growth.from_blob(grown.to_state()["faiss"]).ntotal == len(grown)


def test_a_label_filter_finds_the_nearest_of_the_label_in_every_list(grown):
    queries, _ = people(5, 20)
    hits = grown.search(queries, 5, label="l3")
    mine = [i for i in grown.item_ids() if grown.label(i) == "l3"]
    candidates = np.stack([grown.vector(i) for i in mine])
    _, exact = faiss.knn(queries, candidates, 5)
    assert [[h.item_id for h in row] for row in hits] == [[mine[j] for j in r] for r in exact]


def test_state_round_trip_keeps_answers_and_accepts_changes(grown):
    state = grown.to_state()
    assert isinstance(state["faiss"], np.ndarray) and state["format"] == STATE_FORMAT
    restored = VectorIndex.from_state(state)
    queries, _ = people(6, 50)
    assert restored.kind == "ivf-sq6" and len(restored) == len(grown)
    assert restored.search(queries, 10) == grown.search(queries, 10)
    np.testing.assert_array_equal(restored.vector("i7"), grown.vector("i7"))
    assert restored.delete(["i7"]) == 1 and restored.vector("i7") is None
    restored.upsert(["i7", "new"], queries[:2], ["a", "b"])
    assert [restored.search(queries[j : j + 1], 1)[0][0].item_id for j in (0, 1)] == ["i7", "new"]
    again = VectorIndex.from_state(restored.to_state())
    assert again.search(queries, 10) == restored.search(queries, 10)


def _lists_address(index: VectorIndex) -> int:
    return int(index._index.invlists.this)


def test_fitting_the_lists_keeps_every_entry_and_the_answers(grown):
    ivf = grown._index
    keys, vectors = growth.contents(ivf)
    queries, _ = people(9, 30)
    before = ivf.search(queries, 10)
    growth.fit_lists(ivf)
    after_keys, after_vectors = growth.contents(ivf)
    np.testing.assert_array_equal(after_keys, keys)
    np.testing.assert_array_equal(after_vectors, vectors)
    for was, now in zip(before, ivf.search(queries, 10), strict=True):
        np.testing.assert_array_equal(was, now)


def test_a_compressed_index_refits_its_lists_once_it_has_grown_by_the_refit_share(grown):
    fitted = _lists_address(grown)
    step = int(len(grown) * growth.REFIT_GROWTH)
    more, _ = people(10, step)
    grown.upsert([f"m{j}" for j in range(step - 1)], more[:-1], [None] * (step - 1))
    assert _lists_address(grown) == fitted
    grown.upsert(["last"], more[-1:], [None])
    assert _lists_address(grown) != fitted
    assert grown.search(more[-1:], 1)[0][0].item_id == "last" and "m0" in grown


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
_LIBC.malloc_usable_size.restype = ctypes.c_size_t
_LIBC.malloc_usable_size.argtypes = [ctypes.c_void_p]


def _storage_bytes(pointer: int) -> int:
    """The bytes glibc allocated for the block at `pointer`."""
    return _LIBC.malloc_usable_size(pointer)


def test_a_build_caught_up_with_a_backlog_leaves_each_list_within_its_headroom():
    total = ITEMS + ITEMS // 2
    vectors, _ = people(3, total)
    ids = [f"i{j}" for j in range(total)]
    index = VectorIndex(DIM, ivf_threshold=ITEMS)
    backlog_in = threading.Event()

    def trainer(sample: np.ndarray, lists: int) -> faiss.IndexIVFScalarQuantizer:
        backlog_in.wait(BUILD_TIMEOUT_S)
        return growth.train(sample, lists)

    index.trainer = trainer
    index.upsert(ids[:ITEMS], vectors[:ITEMS], [None] * ITEMS)
    # Written while the build trains, in ingest-sized batches: half as much again.
    for start in range(ITEMS, total, 500):
        index.upsert(ids[start : start + 500], vectors[start : start + 500], [None] * 500)
    backlog_in.set()
    index.wait_for_growth(BUILD_TIMEOUT_S)
    ivf = index._index
    assert index.kind == "ivf-sq6" and ivf.ntotal == total
    lists = ivf.invlists
    held = [
        (lists.list_size(n), _storage_bytes(int(lists.get_codes(n))))
        for n in range(ivf.nlist)
        if lists.list_size(n)
    ]
    over = [
        (size, stored)
        for size, stored in held
        if stored
        > math.ceil(size * (1 + growth.LIST_HEADROOM)) * lists.code_size + CHUNK_SLACK_BYTES
    ]
    assert over == [], f"{len(over)} of {len(held)} lists hold more than their headroom"


def test_an_index_built_with_8_bit_codes_loads_and_answers_as_before(monkeypatch):
    """Snapshots written before the codes became 6-bit keep their codes when loaded."""
    monkeypatch.setattr(growth, "CODE", "SQ8")
    vectors, _ = people(7, ITEMS // 4, centres=PEOPLE // 4)
    index = VectorIndex(DIM, ivf_threshold=len(vectors))
    index.upsert([f"i{j}" for j in range(len(vectors))], vectors, ["l"] * len(vectors))
    index.wait_for_growth(BUILD_TIMEOUT_S)
    monkeypatch.undo()
    restored = VectorIndex.from_state(index.to_state())
    assert restored.kind == "ivf-sq8"
    assert restored.search(vectors[:1], 1)[0][0].item_id == "i0"
    np.testing.assert_allclose(restored.vector("i5"), vectors[5], atol=CODE_ERROR / 2)
    restored.upsert(["new"], vectors[6:7] + 0.01, ["l"])
    assert restored.kind == "ivf-sq8" and restored.vector("new") is not None
