"""How work reaches a modality's index shards and how their answers become one.

Writers split a batch by partition (`split_update`) and send each part to every replica of its
shard; readers ask one replica of every shard and merge (`merge_hits`). A shard's replicas'
replies to its part make one (`merge_replicas`), and the shards' replies to one batch make one
(`merge_results`). Which shard owns which partition is pipeline/index/shard_map.py.
"""

from collections.abc import Iterable, Mapping, Sequence

from pipeline.index.checkpoint import DurableOffsets
from pipeline.index.holder import ApplyOutcome, ApplyResult, IndexUpdate
from pipeline.index.shard_map import ShardMap
from pipeline.index.vector_index import Hit


def split_update(update: IndexUpdate, shards: ShardMap) -> dict[int, IndexUpdate]:
    """The batch as each shard owning some of its partitions must apply it: its operations
    and offsets for those partitions, in the batch's order."""
    partitions = {p for p, _ in update.upsert_positions} | {p for p, _ in update.delete_positions}
    partitions |= set(update.start_offsets) | set(update.offsets)
    parts = {}
    for shard in sorted({shards.owner(p) for p in partitions}):
        upserts = [i for i, (p, _) in enumerate(update.upsert_positions) if shards.owns(shard, p)]
        deletes = [i for i, (p, _) in enumerate(update.delete_positions) if shards.owns(shard, p)]
        parts[shard] = IndexUpdate(
            upsert_ids=[update.upsert_ids[i] for i in upserts],
            vectors={version: rows[upserts] for version, rows in update.vectors.items()},
            labels=[update.labels[i] for i in upserts],
            upsert_positions=[update.upsert_positions[i] for i in upserts],
            delete_ids=[update.delete_ids[i] for i in deletes],
            delete_positions=[update.delete_positions[i] for i in deletes],
            start_offsets={p: o for p, o in update.start_offsets.items() if shards.owns(shard, p)},
            offsets={p: o for p, o in update.offsets.items() if shards.owns(shard, p)},
        )
    return parts


def merge_versions(lists: Iterable[Sequence[str]]) -> list[str]:
    """Every version any shard wants embedded, in first-seen order (the active one first: all
    shards flip together, and for the instant they do either order embeds both)."""
    merged: list[str] = []
    for versions in lists:
        merged += [v for v in versions if v not in merged]
    return merged


def _outcome(results: Sequence[ApplyResult]) -> ApplyOutcome:
    """A replay if any holder wants one, else embed again if any began a build, else applied.
    A holder that applied its part skips it when the batch is sent again."""
    outcomes = {r.outcome for r in results}
    for wanted in (ApplyOutcome.REPLAY, ApplyOutcome.EMBED_AGAIN):
        if wanted in outcomes:
            return wanted
    return ApplyOutcome.APPLIED


def merge_results(results: Sequence[ApplyResult]) -> ApplyResult:
    """One reply for a batch split over shards: the durable offsets of all (their partitions
    are disjoint)."""
    durable = DurableOffsets({p: o for r in results for p, o in r.durable.offsets.items()})
    return ApplyResult(_outcome(results), merge_versions(r.versions for r in results), durable)


def merge_replicas(results: Sequence[ApplyResult]) -> ApplyResult:
    """One reply for a shard's part from all its replicas: durable is what every one of them
    has made durable, so the group never commits past a replica."""
    durable = DurableOffsets(applied_everywhere([r.durable.offsets for r in results], missing=None))
    return ApplyResult(_outcome(results), merge_versions(r.versions for r in results), durable)


def applied_everywhere(
    replicas: Sequence[Mapping[int, int]], missing: int | None = 0
) -> dict[int, int]:
    """Per partition, the least offset among the replicas: where all of them have got to. A
    partition some replica has no offset for counts as `missing` there, or is left out when
    `missing` is None."""
    partitions = {p for offsets in replicas for p in offsets}
    merged = {}
    for p in partitions:
        found = [offsets.get(p, missing) for offsets in replicas]
        if None not in found:
            merged[p] = min(o for o in found if o is not None)
    return merged


def applied_anywhere(replicas: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Per partition, the greatest offset among the replicas: where the most advanced one has
    got to."""
    merged: dict[int, int] = {}
    for offsets in replicas:
        for p, at in offsets.items():
            merged[p] = max(at, merged.get(p, at))
    return merged


def merge_hits(answers: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    """The `k` nearest of every shard's own nearest: each id lives in one shard, so the merged
    list holds no id twice, and it is exact whenever each shard's list is."""
    return sorted((hit for hits in answers for hit in hits), key=lambda h: h.squared_l2)[:k]
