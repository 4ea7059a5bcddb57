"""Who answers a replica's query: which model version, and which index for it.

A replica remembers which model version a modality's index shards search instead of asking on
every query: a shard refuses a search or lookup by any other version, and a similarity of two
payloads (which touches no index) asks the shards while it embeds. A query that meets a
refusal learns the new version and is answered again, wholly by it, so every answer is
still made by one version and all replicas switch when the shards do.

A search asks every shard for its k nearest and merges them. An id lookup asks the shard that
owns the partition the id's key goes to by default (pipeline/kafka/partitioning.py), and every
other shard only when that one does not hold it: one call instead of one a shard for items
produced as the contract asks. A search by id asks that shard for the vector and its own
nearest in the same call, so the other shards' searches are the only second round.
Each shard is answered from the replica's own copy of it when that copy holds the query's
version and its lease runs (pipeline/index/replica_copy.py), which saves the round trip;
otherwise by one of the shard's replicas, batched (services/api/batching.py), failing over to
another when it is down (pipeline/index/replica_reads.py). Copies are kept only with one
replica per shard: a copy follows one holder.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import numpy as np
from ray.actor import ActorHandle

from pipeline.embed.model import EmbeddingModel
from pipeline.index.feed import FeedPosition, FeedReply
from pipeline.index.handles import ModelCache, Shards
from pipeline.index.holder import StaleVersionError
from pipeline.index.replica_copy import IndexCopy, Poll
from pipeline.index.replica_reads import ReplicaReads
from pipeline.index.shard_map import ShardMap
from pipeline.index.shards import merge_hits
from pipeline.index.vector_index import Hit, VectorIndex
from pipeline.kafka.partitioning import key_partition
from pipeline.settings import Settings
from schemas.items import Modality
from services.api.batching import SearchBatches
from services.api.metrics import METRICS

T = TypeVar("T")
# A query meeting a switch is answered again, waiting a little longer each time, for this
# long: a shard busy writing a checkpoint flips when it is done.
SWITCH_WAIT_S = 10.0
SWITCH_RETRY_S = 0.05


class VersionRouter:
    def __init__(
        self, settings: Settings, holders: dict[Modality, Shards], models: ModelCache
    ) -> None:
        # Public: the catalog reads through it too, so one check says which replicas are behind.
        self.reads = ReplicaReads(holders)
        self._models = models
        self._partitions = settings.topic_partitions
        self._searches = SearchBatches(settings, self.reads)
        # modality -> the version its shards searched when this replica last heard.
        self._versions: dict[Modality, str] = {}
        self._copies = (
            {m: [IndexCopy(_feed(replicas[0])) for replicas in s] for m, s in holders.items()}
            if settings.api_index_copies and settings.index_replicas == 1
            else {}
        )

    async def holder_versions(self) -> dict[Modality, str]:
        """What every modality's first shard searches now, asked rather than remembered (all
        shards flip together)."""
        versions = await asyncio.gather(
            *(self.reads.ask(m, 0, lambda h: h.active_version.remote()) for m in Modality)
        )
        return dict(zip(Modality, versions, strict=True))

    async def model(self, version: str) -> EmbeddingModel:
        """Off the event loop only when the artifact must be read from disk."""
        return self._models.loaded(version) or await asyncio.to_thread(self._models.get, version)

    async def active_model(self, modality: Modality) -> EmbeddingModel:
        version = self._versions.get(modality)
        if version is None:
            version = await self._learn_version(modality)
        return await self.model(version)

    async def confirm(self, modality: Modality, version: str) -> None:
        """Raise StaleVersionError unless `version` still answers for `modality` in every
        shard."""
        copies = self._copies.get(modality, [])
        current = {copy.version for copy in copies}
        if not copies or None in current:
            current = set(
                await self.reads.ask_every_shard(modality, lambda h: h.active_version.remote())
            )
        if current != {version}:
            raise StaleVersionError(f"the {modality.value} index switched away from {version}")

    async def retrying_switches(self, modality: Modality, query: Callable[[], Awaitable[T]]) -> T:
        """A query that raced a model switch is answered again, wholly with the new version;
        while the shards flip (each as soon as it is free) it may meet both, so it tries again
        for up to SWITCH_WAIT_S."""
        deadline = time.monotonic() + SWITCH_WAIT_S
        pause = 0.0
        while True:
            try:
                return await query()
            except StaleVersionError:
                if time.monotonic() > deadline:
                    raise
                await self._learn_version(modality)
                await asyncio.sleep(pause)
                pause = min(max(2 * pause, SWITCH_RETRY_S), 0.5)

    async def vector(self, modality: Modality, version: str, item_id: str) -> np.ndarray | None:
        """The item's vector from whichever shard holds it: its key's shard first."""
        first = self._key_shard(modality, item_id)
        vector = await self._lookup(modality, first, version, item_id)
        if vector is not None:
            METRICS.id_lookups.labels(modality.value, "key_shard").inc()
            return vector
        return await self._lookup_elsewhere(modality, first, version, item_id)

    async def search(
        self, modality: Modality, version: str, vector: np.ndarray, k: int, label: str | None
    ) -> list[Hit]:
        """Every shard's k nearest, merged (pipeline/index/shards.py)."""
        shards = range(self.reads.shards(modality))
        return merge_hits(await self._search_shards(modality, version, vector, k, label, shards), k)

    async def search_by_id(
        self, modality: Modality, version: str, item_id: str, k: int, label: str | None
    ) -> list[Hit] | None:
        """An indexed item's k nearest, None if no shard holds it. Its key's shard finds the
        vector and searches itself in one call; the other shards search it after."""
        first = self._key_shard(modality, item_id)
        found = await self._on_shard(
            modality,
            first,
            version,
            lambda index: index.search_by_id(item_id, k, label),
            lambda h: h.search_by_id.remote(version, item_id, k, label),
        )
        if found is None:
            vector = await self._lookup_elsewhere(modality, first, version, item_id)
            if vector is None:
                return None
            return await self.search(modality, version, vector, k, label)
        METRICS.id_lookups.labels(modality.value, "key_shard").inc()
        vector, hits = found
        others = [s for s in range(self.reads.shards(modality)) if s != first]
        found_elsewhere = await self._search_shards(modality, version, vector, k, label, others)
        return merge_hits([hits, *found_elsewhere], k)

    def _key_shard(self, modality: Modality, item_id: str) -> int:
        shards = self.reads.shards(modality)
        return ShardMap(shards).owner(key_partition(item_id, self._partitions))

    async def _lookup(
        self, modality: Modality, shard: int, version: str, item_id: str
    ) -> np.ndarray | None:
        found = await self._on_shard(
            modality,
            shard,
            version,
            lambda index: index.labelled_vector(item_id),
            lambda h: h.vector.remote(version, item_id),
        )
        return None if found is None else found[0]

    async def _on_shard(
        self,
        modality: Modality,
        shard: int,
        version: str,
        local: Callable[[VectorIndex], T],
        remote: Callable[[ActorHandle], Awaitable[T]],
    ) -> T:
        """`local` on the replica's copy of the shard when it has one for `version`, else
        `remote` asked of the shard (the same answer, one round trip more)."""
        index = self._copy(modality, shard, version)
        if index is not None:
            return local(index)
        return await self.reads.ask(modality, shard, remote)

    async def _lookup_elsewhere(
        self, modality: Modality, first: int, version: str, item_id: str
    ) -> np.ndarray | None:
        """The item's vector from the shards other than its key's, which did not hold it (a
        producer placed its key elsewhere)."""
        METRICS.id_lookups.labels(modality.value, "every_shard").inc()
        found = await asyncio.gather(
            *(
                self._lookup(modality, s, version, item_id)
                for s in range(self.reads.shards(modality))
                if s != first
            )
        )
        return next((vector for vector in found if vector is not None), None)

    async def _search_shards(
        self,
        modality: Modality,
        version: str,
        vector: np.ndarray,
        k: int,
        label: str | None,
        shards: Iterable[int],
    ) -> list[list[Hit]]:
        """The k nearest of each of `shards`, at once: from the replica's copy of a shard, or
        asked of the shard."""

        async def search_shard(shard: int) -> list[Hit]:
            index = self._copy(modality, shard, version)
            if index is not None:
                return index.search(vector[np.newaxis], k, label)[0]
            return await self._searches.search(modality, shard, version, vector, k, label)

        return list(await asyncio.gather(*(search_shard(s) for s in shards)))

    async def _learn_version(self, modality: Modality) -> str:
        version = await self.reads.ask(modality, 0, lambda h: h.active_version.remote())
        self._versions[modality] = version
        return version

    def _copy(self, modality: Modality, shard: int, version: str) -> VectorIndex | None:
        """The replica's copy of a shard if it may answer for `version` now; counts the read."""
        copies = self._copies.get(modality)
        index = None
        if copies is not None:
            copy = copies[shard]
            copy.start()
            index = copy.index(version)
        METRICS.index_reads.labels(modality.value, "holder" if index is None else "copy").inc()
        return index


def _feed(holder: ActorHandle) -> Poll:
    async def poll(copy_id: str, position: FeedPosition | None) -> FeedReply:
        return await holder.changes.remote(copy_id, position)

    return poll
