"""The FAISS index by item id and its snapshots, on real FAISS."""

import _sqlite3
import ctypes

import numpy as np
import pytest

from pipeline.index.item_names import ItemNames, item_keys
from pipeline.index.snapshot import Snapshot, read_latest_snapshot, write_snapshot
from pipeline.index.vector_index import StateFormatError, VectorIndex

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


def test_a_search_by_id_answers_its_vector_and_its_nearest_in_one_call(rng):
    index = VectorIndex(DIM)
    vectors = unit(rng, 20)
    labels = ["x" if i % 2 else "y" for i in range(20)]
    index.upsert([f"i{i}" for i in range(20)], vectors, labels)
    vector, hits = index.search_by_id("i4", 3)
    np.testing.assert_allclose(vector, vectors[4])
    assert hits == index.search(vectors[4][None], 3)[0] and hits[0].item_id == "i4"
    _, only_x = index.search_by_id("i4", 20, label="x")
    assert len(only_x) == 10 and {h.label for h in only_x} == {"x"}
    assert index.search_by_id("nobody", 3) is None


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


def test_labels_and_ids_come_back_from_a_state_and_an_older_state_is_refused(rng):
    index = VectorIndex(DIM)
    index.upsert(["i0", "i1", "other"], unit(rng, 3), ["person", "person", None])
    state = index.to_state()
    copy = VectorIndex.from_state(state)
    assert sorted(copy.item_ids()) == ["i0", "i1", "other"]
    assert [copy.label(i) for i in ("i0", "i1", "other")] == ["person", "person", None]
    with pytest.raises(KeyError):
        copy.label("never")
    with pytest.raises(StateFormatError):
        VectorIndex.from_state(state | {"format": 1})


def test_two_ids_with_one_key_keep_the_first_and_refuse_the_second(caplog):
    names = ItemNames()
    key = np.array([12345], dtype=np.int64)

    def put(item_id: str, label: str) -> tuple[list[bool], list[bool]]:
        refused, replaced = names.put(key, [item_id], [label])
        return refused.tolist(), replaced.tolist()

    assert put("first", "a") == ([False], [False])
    assert put("second", "b") == ([True], [False])
    assert put("first", "c") == ([False], [True])
    assert names.names(key) == {12345: ("first", "c")} and len(names) == 1
    assert "'second' has the index key of 'first'" in caplog.text


def test_item_keys_are_stable_non_negative_and_distinct():
    keys = item_keys([f"face/{n}" for n in range(100_000)])
    assert keys.dtype == np.int64 and (keys >= 0).all() and len(set(keys.tolist())) == 100_000
    # BLAKE2b-64 of "a" is 40f89e395b66422f; its top 63 bits:
    assert item_keys(["a"])[0] == 0x40F89E395B66422F >> 1


def test_names_survive_a_dump_and_load_whatever_their_text():
    ids = ["plain", "nul\x00inside", "ünïcødé/照片", ""]
    labels = [None, "a\x00b", "", "人"]
    names = ItemNames()
    names.put(item_keys(ids), ids, labels)
    loaded = ItemNames()
    loaded.load(names.dump())
    assert loaded.names(item_keys(ids)) == names.names(item_keys(ids))
    assert [loaded.names(item_keys([i]))[item_keys([i])[0]] for i in ids] == list(
        zip(ids, labels, strict=True)
    )
    assert len(loaded) == 4 and ItemNames().dump() == (0).to_bytes(8, "little")


def test_names_looked_up_in_batches_of_every_size_keep_sqlites_memory_bounded(rng):
    # A shard's batches vary in size; memory must not grow with how many sizes it has seen.
    used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    used.restype = ctypes.c_int64
    names = ItemNames()
    ids = [f"face/{n}" for n in range(60_000)]
    keys = item_keys(ids)
    before = used()
    start = 0
    for size in rng.permutation(np.arange(1, 341)).tolist():
        names.put(keys[start : start + size], ids[start : start + size], ["a"] * size)
        start += size
    assert start == len(names) == 57_970
    assert names.held_by(keys[:3]) == ids[:3]
    # The page cache (256 KiB) and a few statements; each size its own statement held 4 MB.
    assert used() - before < 1_000_000
