"""The FAISS index by item id and its snapshots, on real FAISS."""

import numpy as np
import pytest

from pipeline.index.snapshot import Snapshot, read_latest_snapshot, write_snapshot
from pipeline.index.vector_index import VectorIndex

DIM = 8


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_upsert_replaces_and_keeps_one_entry(rng):
    index = VectorIndex(DIM)
    first, second = unit(rng, 2)
    index.upsert(["a"], first[None], ["x"])
    index.upsert(["a"], second[None], ["y"])
    assert len(index) == 1
    np.testing.assert_allclose(index.vector("a"), second)
    hit = index.search(second[None], k=5)[0]
    assert [(h.item_id, h.label) for h in hit] == [("a", "y")]
    assert hit[0].squared_l2 == pytest.approx(0, abs=1e-6)


def test_duplicate_ids_in_one_upsert_are_refused(rng):
    with pytest.raises(ValueError, match="duplicate"):
        VectorIndex(DIM).upsert(["a", "a"], unit(rng, 2), [None, None])


def test_delete_removes_from_search_and_lookup(rng):
    index = VectorIndex(DIM)
    vectors = unit(rng, 3)
    index.upsert(["a", "b", "c"], vectors, ["x", "x", "y"])
    assert index.delete(["b", "missing"]) == 1
    assert "b" not in index and index.vector("b") is None
    found = {h.item_id for h in index.search(vectors[1][None], k=10)[0]}
    assert found == {"a", "c"}


def test_label_filter_and_nearest_first(rng):
    index = VectorIndex(DIM)
    vectors = unit(rng, 20)
    labels = ["x" if i % 2 else "y" for i in range(20)]
    index.upsert([f"i{i}" for i in range(20)], vectors, labels)
    hits = index.search(vectors[3][None], k=20, label="x")[0]
    assert len(hits) == 10 and {h.label for h in hits} == {"x"}
    assert hits[0].item_id == "i3"
    assert [h.squared_l2 for h in hits] == sorted(h.squared_l2 for h in hits)
    assert index.search(vectors[:1], k=3, label="nobody") == [[]]


def test_snapshot_round_trip_and_corrupt_files_fall_back(tmp_path, rng):
    index = VectorIndex(DIM)
    index.upsert(["a", "b"], unit(rng, 2), ["x", None])
    write_snapshot(tmp_path, Snapshot("face-v1", {0: 5}, index))
    index.upsert(["c"], unit(rng, 1), ["z"])
    newest = write_snapshot(tmp_path, Snapshot("face-v1", {0: 6, 1: 2}, index))

    restored = read_latest_snapshot(tmp_path)
    assert restored.offsets == {0: 6, 1: 2}
    assert sorted(restored.index.item_ids()) == ["a", "b", "c"]
    np.testing.assert_array_equal(restored.index.vector("c"), index.vector("c"))

    blob = newest.read_bytes()
    newest.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))  # one flipped byte
    assert read_latest_snapshot(tmp_path).offsets == {0: 5}
    newest.write_bytes(blob[: len(blob) // 2])  # a torn write
    assert read_latest_snapshot(tmp_path).offsets == {0: 5}


def test_only_the_newest_snapshots_are_kept(tmp_path, rng):
    index = VectorIndex(DIM)
    for offset in range(5):
        write_snapshot(tmp_path, Snapshot("face-v1", {0: offset}, index))
    assert len(list(tmp_path.glob("snapshot-*.tws"))) == 2
    assert read_latest_snapshot(tmp_path).offsets == {0: 4}


def test_items_of_one_label_share_its_string_also_after_a_snapshot(rng):
    """A person's many items hold one label object, not a copy each (labels arrive as
    separate strings from every batch)."""
    index = VectorIndex(DIM)
    for n in range(3):
        index.upsert([f"i{n}"], unit(rng, 1), ["".join(["per", "son"])])
    index.upsert(["other"], unit(rng, 1), [None])
    for copy in (index, VectorIndex.from_state(index.to_state())):
        first, *rest = (copy.label(f"i{n}") for n in range(3))
        assert first == "person" and all(label is first for label in rest)
        assert copy.label("other") is None
