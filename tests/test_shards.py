"""A modality's index in shards: which shard a batch's operations reach, how their replies
and hits become one, that a shard keeps to its own partitions and checkpoints, and that a
shard's replicas converge from different offsets (real FAISS, real SQLite;
pipeline/index/shards.py, shard_map.py)."""

import numpy as np
import pytest

from pipeline.index.checkpoint import DurableOffsets
from pipeline.index.handles import holder_name
from pipeline.index.holder import (
    ApplyOutcome,
    ApplyResult,
    ForeignPartitionError,
    IndexHolder,
    IndexUpdate,
)
from pipeline.index.shard_map import ShardMap
from pipeline.index.shards import (
    applied_anywhere,
    applied_everywhere,
    merge_hits,
    merge_replicas,
    merge_results,
    split_update,
)
from pipeline.index.snapshot import read_latest_snapshot
from pipeline.index.vector_index import Hit
from pipeline.settings import Settings
from schemas.items import Modality
from tests.test_holder import store, unit  # noqa: F401  (store: a fixture)

SHARDS = ShardMap(2)


def _mixed(rng: np.random.Generator) -> IndexUpdate:
    """Upserts and deletes from partitions 0-3, interleaved as a poll returns them."""
    ids = [f"item-{i}" for i in range(8)]
    return IndexUpdate(
        upsert_ids=ids,
        vectors={"face-v1": unit(rng, len(ids))},
        labels=[f"label-{i}" for i in range(len(ids))],
        upsert_positions=[(i % 4, i // 4) for i in range(len(ids))],
        delete_ids=["gone-1", "gone-2"],
        delete_positions=[(1, 2), (2, 2)],
        start_offsets={p: 0 for p in range(4)},
        offsets={0: 2, 1: 3, 2: 3, 3: 2},
    )


def test_a_batch_reaches_each_shard_with_its_own_partitions_operations_and_rows():
    rng = np.random.default_rng(0)
    update = _mixed(rng)
    parts = split_update(update, SHARDS)
    assert set(parts) == {0, 1}
    even, odd = parts[0], parts[1]
    assert even.upsert_ids == ["item-0", "item-2", "item-4", "item-6"]
    assert odd.upsert_ids == ["item-1", "item-3", "item-5", "item-7"]
    assert even.upsert_positions == [(0, 0), (2, 0), (0, 1), (2, 1)]
    np.testing.assert_array_equal(even.vectors["face-v1"], update.vectors["face-v1"][[0, 2, 4, 6]])
    assert even.labels == ["label-0", "label-2", "label-4", "label-6"]
    assert (even.delete_ids, even.delete_positions) == (["gone-2"], [(2, 2)])
    assert (odd.delete_ids, odd.delete_positions) == (["gone-1"], [(1, 2)])
    assert even.start_offsets == {0: 0, 2: 0} and odd.start_offsets == {1: 0, 3: 0}
    assert even.offsets == {0: 2, 2: 3} and odd.offsets == {1: 3, 3: 2}
    # One shard: the batch as it was.
    (whole,) = split_update(update, ShardMap(1)).values()
    assert whole.upsert_ids == update.upsert_ids and whole.offsets == update.offsets


def _result(outcome: ApplyOutcome, versions: list[str], durable: dict[int, int]) -> ApplyResult:
    return ApplyResult(outcome, versions, DurableOffsets(durable))


def test_the_shards_replies_to_one_batch_make_one():
    applied = _result(ApplyOutcome.APPLIED, ["face-v1"], {0: 5})
    building = _result(ApplyOutcome.EMBED_AGAIN, ["face-v1", "face-v2"], {1: 7})
    behind = _result(ApplyOutcome.REPLAY, ["face-v1"], {3: 2})
    assert merge_results([applied, building]) == _result(
        ApplyOutcome.EMBED_AGAIN, ["face-v1", "face-v2"], {0: 5, 1: 7}
    )
    assert merge_results([building, behind, applied]).outcome is ApplyOutcome.REPLAY
    assert merge_results([applied, _result(ApplyOutcome.APPLIED, ["face-v1"], {1: 1})]) == (
        _result(ApplyOutcome.APPLIED, ["face-v1"], {0: 5, 1: 1})
    )


def test_a_shards_replicas_replies_make_one_durable_only_where_all_of_them_are():
    ahead = _result(ApplyOutcome.APPLIED, ["face-v1"], {0: 9, 2: 4})
    behind = _result(ApplyOutcome.APPLIED, ["face-v1"], {0: 5})
    assert merge_replicas([ahead, behind]) == _result(ApplyOutcome.APPLIED, ["face-v1"], {0: 5})
    building = _result(ApplyOutcome.EMBED_AGAIN, ["face-v1", "face-v2"], {0: 9, 2: 4})
    assert merge_replicas([ahead, building]).outcome is ApplyOutcome.EMBED_AGAIN
    assert merge_replicas([building, _result(ApplyOutcome.REPLAY, [], {})]).outcome is (
        ApplyOutcome.REPLAY
    )
    # Where ingest resumes: the least advanced replica, from 0 where one has nothing yet.
    assert applied_everywhere([{0: 9, 2: 4}, {0: 5}]) == {0: 5, 2: 0}
    assert applied_everywhere([{0: 9, 2: 4}, {0: 5}], missing=None) == {0: 5}
    # Where reads judge a replica behind from: the most advanced replica.
    assert applied_anywhere([{0: 9, 2: 4}, {0: 5}]) == {0: 9, 2: 4}


def test_replica_0_keeps_the_shards_name_and_the_others_are_numbered():
    assert holder_name(Modality.FACE, 1) == holder_name(Modality.FACE, 1, 0) == "index-face-1"
    assert holder_name(Modality.AUDIO, 0, 2) == "index-audio-0-r2"


def test_hits_from_every_shard_merge_into_the_k_nearest():
    first = [Hit("a", None, 0.1), Hit("c", "x", 0.5), Hit("e", None, 0.9)]
    second = [Hit("b", None, 0.2), Hit("d", None, 0.6)]
    assert [h.item_id for h in merge_hits([first, second], 4)] == ["a", "b", "c", "d"]
    assert merge_hits([[], second], 5) == second


@pytest.fixture
def settings(tmp_path) -> Settings:
    """test_holder's store registers its models with these settings: two shards."""
    return Settings(state_dir=tmp_path, snapshot_interval_s=3600, index_shards=2)


@pytest.mark.usefixtures("store")
def test_each_shard_applies_and_checkpoints_only_its_partitions(settings):
    shards = [IndexHolder(settings, Modality.FACE, shard) for shard in range(2)]
    update = _mixed(np.random.default_rng(1))
    for shard, part in split_update(update, SHARDS).items():
        assert shards[shard].apply(part).outcome is ApplyOutcome.APPLIED
    assert shards[0].contains(update.upsert_ids) == [i % 2 == 0 for i in range(8)]
    assert shards[1].contains(update.upsert_ids) == [i % 2 == 1 for i in range(8)]
    assert shards[0].offsets() == {0: 2, 2: 3} and shards[1].offsets() == {1: 3, 3: 2}
    with pytest.raises(ForeignPartitionError):
        shards[0].apply(split_update(update, SHARDS)[1])

    for shard in shards:
        shard.snapshot()
    for number in range(2):
        snapshot = read_latest_snapshot(settings.index_dir / "face" / "shards-2" / str(number))
        assert snapshot is not None and len(snapshot.index) == 4
        assert set(snapshot.offsets) == ({0, 2} if number == 0 else {1, 3})
    # A shard restarted reads its own checkpoint back.
    again = IndexHolder(settings, Modality.FACE, 1)
    assert again.offsets() == {1: 3, 3: 2} and again.size() == 4


def test_more_shards_than_partitions_is_refused_with_the_settings():
    """A shard that owns no partition would hold nothing: refused wherever settings are read
    (`up`, the CLI, the benchmarks), not at the first start."""
    with pytest.raises(ValueError, match=r"INDEX_SHARDS \(5\) is more than TOPIC_PARTITIONS \(4\)"):
        Settings(index_shards=5, topic_partitions=4)
    assert Settings(index_shards=4, topic_partitions=4).index_shards == 4


@pytest.mark.usefixtures("store")
def test_a_replica_behind_catches_up_from_the_same_batches_and_checkpoints_on_its_own(settings):
    """Ingest sends every replica the batch from where the least advanced one is: the one
    ahead skips what it has, the other applies it all, and both hold the same."""
    replicated = settings.model_copy(update={"index_replicas": 2})
    ahead, behind = (IndexHolder(replicated, Modality.FACE, 0, r) for r in range(2))
    update = _mixed(np.random.default_rng(2))
    part = split_update(update, SHARDS)[0]
    assert ahead.apply(part).outcome is ApplyOutcome.APPLIED
    # Resumed from the replica with nothing: the same records again, both replicas.
    assert applied_everywhere([ahead.offsets(), behind.offsets()]) == {0: 0, 2: 0}
    for replica in (ahead, behind):
        assert replica.apply(part).outcome is ApplyOutcome.APPLIED
    assert ahead.contains(part.upsert_ids) == behind.contains(part.upsert_ids) == [True] * 4
    assert ahead.size() == behind.size() == 4
    assert ahead.offsets() == behind.offsets() == {0: 2, 2: 3}
    for replica in (ahead, behind):
        replica.snapshot()
    shards = replicated.index_dir / "face" / "shards-2"
    for directory in (shards / "0", shards / "0-replica-1"):
        snapshot = read_latest_snapshot(directory)
        assert snapshot is not None and len(snapshot.index) == 4
