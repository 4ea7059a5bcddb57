"""Payload retention follows the items: shared content survives until its last item goes.

Runs on SQLite and PostgreSQL (tests/fixtures_db.py) with real ORL face bytes.
"""

import pytest

from pipeline.data.orl import iter_orl
from pipeline.store import ItemRecord, MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.retention import RetainedItems
from schemas.items import Modality

FACE, AUDIO = Modality.FACE, Modality.AUDIO


@pytest.fixture
def store(database_url):
    metadata = MetadataStore(database_url)
    yield metadata
    metadata.close()


@pytest.fixture
def faces() -> list[bytes]:
    return [face.read_bytes() for face in list(iter_orl())[:3]]


def record(item_id: str, sha256: str, modality: Modality = FACE) -> ItemRecord:
    return ItemRecord(
        modality=modality,
        item_id=item_id,
        label="s1",
        payload_sha256=sha256,
        content_type="image/x-portable-graymap",
        source_topic=f"twinstream.{modality}",
        source_partition=0,
        source_offset=0,
    )


def test_delete_removes_bytes_only_when_no_item_shares_them(store, tmp_path, faces):
    payloads = PayloadStore(tmp_path / "payloads")
    retained = RetainedItems(store, payloads)
    shared, own = payloads.put_all(faces[:2])
    retained.upsert(
        [record("a", shared), record("b", shared), record("c", own), record("a", shared, AUDIO)],
        {shared: faces[0], own: faces[1]},
    )

    assert retained.delete(FACE, ["a", "c"]) == 2
    assert shared in payloads, "b (and the audio item a) still point at it"
    assert own not in payloads

    assert retained.delete(FACE, ["b"]) == 1
    assert shared in payloads, "the other modality's item still points at it"
    assert retained.delete(AUDIO, ["a"]) == 1
    assert shared not in payloads
    assert retained.delete(FACE, ["a", "b", "c"]) == 0, "a replayed tombstone is a no-op"


def test_upsert_with_new_bytes_releases_the_old_ones(store, tmp_path, faces):
    payloads = PayloadStore(tmp_path / "payloads")
    retained = RetainedItems(store, payloads)
    first, second, kept = payloads.put_all(faces)
    data = dict(zip((first, second, kept), faces, strict=True))
    retained.upsert([record("a", first), record("k", kept)], data)

    retained.upsert([record("a", second), record("k", kept)], data)
    assert first not in payloads
    assert second in payloads and kept in payloads
    assert payloads.get(second) == faces[1]
    assert store.get_item(FACE, "a").payload_sha256 == second


def test_bytes_released_while_a_new_item_was_on_its_way_are_stored_again(store, tmp_path, faces):
    payloads = PayloadStore(tmp_path / "payloads")
    retained = RetainedItems(store, payloads)
    sha = payloads.address(faces[0])
    retained.upsert([record("old", sha)], {sha: faces[0]})
    # An ingest batch holds a new item with the same bytes, not yet stored, when the last
    # stored item using them is deleted (an API DELETE), and the file with it.
    arriving = record("new", sha)
    retained.delete(FACE, ["old"])
    assert sha not in payloads

    retained.upsert([arriving], {sha: faces[0]})
    assert payloads.get(sha) == faces[0], "a stored item never points at missing bytes"


def test_hash_queries_cover_more_ids_than_one_statement_binds(store, tmp_path, faces):
    payloads = PayloadStore(tmp_path / "payloads")
    (sha,) = payloads.put_all(faces[:1])
    ids = [f"many/{i}" for i in range(1200)]
    store.upsert_items([record(item_id, sha) for item_id in ids])
    assert store.payload_hashes(FACE, ids) == {sha}
    assert store.unreferenced_payloads([sha, "0" * 64]) == {"0" * 64}
    assert RetainedItems(store, payloads).delete(FACE, ids) == len(ids)
    assert sha not in payloads
