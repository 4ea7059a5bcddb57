"""The Ray actor that owns one shard of a modality's index: its single writer and a query target.

A shard owns a fixed set of the item topic's partitions (pipeline/index/shard_map.py); with one
shard, the whole index. A shard's replicas are holders of the same partitions, each with its
own offsets and checkpoints: every batch is sent to each, and one that is behind (restarted
from an older checkpoint) skips what it has and applies the rest.

Ingest actors send it embedded batches together with the Kafka offsets each operation came
from; it applies both in one step, so the offsets it reports always describe exactly what
the index contains. Being the one place every write passes through also makes it the place
where a model switch happens: while a new version is being built it keeps one index per
version, asks every writer for vectors of each, and flips the active version in one step.
It also feeds every change of the active index to the copies API replicas search
(pipeline/index/feed.py), and acknowledges an API delete or a switch only once they have it.
When its index and offsets are written to disk is its `Checkpoint`'s business
(pipeline/index/checkpoint.py).
"""

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import faiss
import numpy as np

from pipeline.index import growth, heap
from pipeline.index.checkpoint import Checkpoint, DurableOffsets
from pipeline.index.feed import ChangeFeed, Deleted, FeedPosition, FeedReply, Upserted
from pipeline.index.shard_map import ShardMap
from pipeline.index.snapshot import read_latest_snapshot
from pipeline.index.training import train_in_a_task
from pipeline.index.vector_index import Hit, VectorIndex
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from schemas.items import Modality


class StaleVersionError(LookupError):
    """The caller embedded with a model version this holder no longer searches."""


@dataclass
class IndexUpdate:
    """One ingest batch for one modality, already reduced to the last operation per id.

    Every operation carries the partition and offset it came from, so a batch replayed
    after a rebalance or a crash applies only what the index has not seen yet.
    """

    upsert_ids: list[str]
    # model version -> one row per upsert id
    vectors: dict[str, np.ndarray]
    labels: list[str | None]
    upsert_positions: list[tuple[int, int]]
    delete_ids: list[str]
    delete_positions: list[tuple[int, int]]
    # partition -> first offset in the batch, and the next offset to consume after it
    start_offsets: dict[int, int] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)


class ApplyOutcome(Enum):
    APPLIED = "applied"
    # A build began: embed the batch for every version in `versions` as well, and send it again.
    EMBED_AGAIN = "embed-again"
    # The batch starts past what the index has applied (the holder came back from an older
    # snapshot): consume again from the holder's offsets.
    REPLAY = "replay"


@dataclass(frozen=True)
class ApplyResult:
    outcome: ApplyOutcome
    # Every version writers must embed for, the active one first.
    versions: list[str]
    # What the newest snapshot covers: the most the consumer group may commit.
    durable: DurableOffsets


class ForeignPartitionError(ValueError):
    """A batch carried a partition another shard owns: a routing bug, refused whole."""


def shard_directory(settings: Settings, modality: Modality, shard: int, replica: int = 0) -> Path:
    """Where a shard replica's checkpoints live. One shard keeps the unsharded layout; the
    shard count is in the path otherwise, so a changed count never loads a snapshot holding
    partitions its shard no longer owns (the shards start empty and replay the topic). Each
    replica checkpoints on its own: replica 0 where the shard did before replicas."""
    base = settings.index_dir / modality.value
    if replica:
        return base / f"shards-{settings.index_shards}" / f"{shard}-replica-{replica}"
    if settings.index_shards == 1:
        return base
    return base / f"shards-{settings.index_shards}" / str(shard)


class IndexHolder:
    def __init__(
        self, settings: Settings, modality: Modality, shard: int = 0, replica: int = 0
    ) -> None:
        heap.keep_large_buffers_out_of_the_heap()
        # One FAISS thread: a node runs several shards and API replicas, and an OpenMP team per
        # batch-1 search only waits on cores the others hold.
        faiss.omp_set_num_threads(1)
        growth.without_blas()
        store = MetadataStore.from_settings(settings)
        model = store.active_model(modality)
        if model is None:
            raise LookupError(f"no active {modality.value} model to index with")
        store.close()
        self._shard = shard
        self._shards = ShardMap(settings.index_shards)
        directory = shard_directory(settings, modality, shard, replica)
        self._ivf_threshold = settings.index_ivf_threshold
        snapshot = read_latest_snapshot(directory)
        if snapshot is not None and snapshot.model_version == model.version:
            index, offsets = snapshot.index, snapshot.offsets
        else:
            # A new model means every stored vector is stale: start empty and let
            # the consumers replay the (compacted) topic from the beginning.
            dim = model.config["encoder"]["embedding_dim"]
            index, offsets = VectorIndex(dim, self._ivf_threshold), {}
        index.trainer = train_in_a_task
        self._active = model.version
        self._indexes: dict[str, VectorIndex] = {model.version: index}
        self._feed = ChangeFeed(model.version)
        # Per version being built: ids the live stream touched since the build began, which
        # a backfill from older stored payloads must not overwrite or bring back.
        self._touched: dict[str, set[str]] = {}
        # Upserts applied by this process: the ingest rate is its derivative.
        self._upserted = 0
        self._checkpoint = Checkpoint(
            directory,
            settings.snapshot_interval_s,
            settings.snapshot_every_updates,
            offsets,
            lambda: (self._active, self._indexes[self._active]),
        )

    # --- versions -------------------------------------------------------------------------

    def active_version(self) -> str:
        return self._active

    def versions(self) -> list[str]:
        """Every version writers must embed for: the active one first, then any being built."""
        return [self._active, *(v for v in self._indexes if v != self._active)]

    def begin_build(self, version: str, dim: int) -> None:
        if version not in self._indexes:
            self._indexes[version] = VectorIndex(dim, self._ivf_threshold)
            self._indexes[version].trainer = train_in_a_task
            self._touched[version] = set()

    def backfill(
        self, version: str, item_ids: list[str], vectors: np.ndarray, labels: list[str | None]
    ) -> int:
        """Add stored items to a version being built, unless the stream got there first."""
        touched = self._touched[version]
        keep = [i for i, item_id in enumerate(item_ids) if item_id not in touched]
        if keep:
            self._indexes[version].upsert(
                [item_ids[i] for i in keep], vectors[keep], [labels[i] for i in keep]
            )
        return len(keep)

    def built(self, version: str) -> bool:
        """Whether `activate(version)` can flip now: asked of every shard before any flips."""
        return version in self._indexes

    def abandon_build(self, version: str) -> None:
        if version != self._active:
            self._indexes.pop(version, None)
            self._touched.pop(version, None)

    def activate(self, version: str) -> str:
        """Switch searches to a built version at once; the previous index is dropped (a
        rollback rebuilds it the same way). Returns the previous version."""
        if version not in self._indexes:
            raise LookupError(f"version {version} has not been built here")
        previous, self._active = self._active, version
        self._touched.pop(version, None)
        if previous != version:
            del self._indexes[previous]
        self._feed.restart(version)
        # At once: a holder restarted after the store switched must find this version on disk,
        # or it starts empty.
        self._checkpoint.record({}, 1)
        self._checkpoint.make_durable()
        return previous

    def _index(self, version: str) -> VectorIndex:
        if version != self._active:
            raise StaleVersionError(f"the index now holds {self._active}, not {version}")
        return self._indexes[version]

    # --- writes ---------------------------------------------------------------------------

    def offsets(self) -> dict[int, int]:
        """partition -> the next offset the index expects: where writers resume."""
        return self._checkpoint.applied()

    def apply(self, update: IndexUpdate) -> ApplyResult:
        foreign = {
            p
            for p in [*update.offsets, *update.start_offsets]
            if not self._shards.owns(self._shard, p)
        }
        if foreign:
            raise ForeignPartitionError(f"shard {self._shard} does not own partitions {foreign}")
        versions = self.versions()
        if update.upsert_ids and not set(versions) <= set(update.vectors):
            return ApplyResult(ApplyOutcome.EMBED_AGAIN, versions, self._checkpoint.durable())
        applied = self._checkpoint.applied()
        if any(start > applied.get(p, 0) for p, start in update.start_offsets.items()):
            return ApplyResult(ApplyOutcome.REPLAY, versions, self._checkpoint.durable())
        fresh_deletes = [
            item_id
            for item_id, (p, o) in zip(update.delete_ids, update.delete_positions, strict=True)
            if o >= applied.get(p, 0)
        ]
        fresh = [i for i, (p, o) in enumerate(update.upsert_positions) if o >= applied.get(p, 0)]
        fresh_ids = [update.upsert_ids[i] for i in fresh]
        for version, index in self._indexes.items():
            index.delete(fresh_deletes)
            if fresh:
                index.upsert(
                    fresh_ids, update.vectors[version][fresh], [update.labels[i] for i in fresh]
                )
        for touched in self._touched.values():
            touched.update(fresh_ids, fresh_deletes)
        if fresh_deletes:
            self._feed.record(Deleted(fresh_deletes))
        if fresh:
            self._feed.record(
                Upserted(
                    fresh_ids,
                    update.vectors[self._active][fresh],
                    [update.labels[i] for i in fresh],
                )
            )
        # A writer that lost a partition in a rebalance may still send a batch its new owner
        # went past: its operations were skipped above, and its end moves nothing.
        moved = {p: end for p, end in update.offsets.items() if end > applied.get(p, 0)}
        self._upserted += len(fresh)
        self._checkpoint.record(moved, len(fresh) + len(fresh_deletes) + 1)
        return ApplyResult(ApplyOutcome.APPLIED, versions, self._checkpoint.durable())

    def delete(self, item_ids: list[str]) -> int:
        """An API delete: gone from search at once; its tombstone follows through the log."""
        removed = [index.delete(item_ids) for index in self._indexes.values()]
        for touched in self._touched.values():
            touched.update(item_ids)
        self._feed.record(Deleted(list(item_ids)))
        self._checkpoint.record({}, 1)
        return removed[list(self._indexes).index(self._active)]

    # --- copies in API replicas (the Ray actor runs these on its event loop, between the
    # --- other methods, so a long poll never holds up a write) -----------------------------

    async def changes(self, copy_id: str, position: FeedPosition | None) -> FeedReply:
        return await self._feed.poll(copy_id, position, self._active_state)

    def _active_state(self) -> dict:
        """Looked up when a poll is answered: a switch while it waited changes the index."""
        return self._indexes[self._active].to_state()

    async def delete_everywhere(self, item_ids: list[str]) -> int:
        """`delete`, returning once no copy can answer with these items any more."""
        removed = self.delete(item_ids)
        await self._feed.synced()
        return removed

    async def activate_everywhere(self, version: str) -> str:
        """`activate`, returning once every copy searches `version`."""
        previous = self.activate(version)
        await self._feed.synced()
        return previous

    # --- reads ----------------------------------------------------------------------------

    def size(self) -> int:
        return len(self._indexes[self._active])

    def stats(self) -> dict[str, object]:
        """One call for a metrics scrape."""
        return {
            "size": self.size(),
            "applied": self._upserted,
            "offsets": self.offsets(),
            "model_version": self._active,
            "shard": self._shard,
            "index_kind": self._indexes[self._active].kind,
            **self._checkpoint.stats(),
        }

    def contains(self, item_ids: list[str]) -> list[bool]:
        index = self._indexes[self._active]
        return [item_id in index for item_id in item_ids]

    def search(
        self, version: str, queries: np.ndarray, k: int, label: str | None = None
    ) -> list[list[Hit]]:
        return self._index(version).search(queries, k, label)

    def vector(self, version: str, item_id: str) -> tuple[np.ndarray, str | None] | None:
        return self._index(version).labelled_vector(item_id)

    def search_by_id(
        self, version: str, item_id: str, k: int, label: str | None = None
    ) -> tuple[np.ndarray, list[Hit]] | None:
        return self._index(version).search_by_id(item_id, k, label)

    # --- checkpoints ----------------------------------------------------------------------

    def make_durable_if_due(self) -> DurableOffsets:
        """Asked by ingest while the stream is quiet: changes wait for their checkpoint (and
        their offsets for a commit) at most the snapshot interval, not until the next batch."""
        if self._checkpoint.due():
            self._checkpoint.make_durable()
        return self._checkpoint.durable()

    def snapshot(self) -> Path | None:
        """Make what the index has applied durable now, as on a clean stop."""
        return self._checkpoint.make_durable()
