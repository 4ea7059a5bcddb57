"""Who answers a replica's query: which model version, and which index for it.

A replica remembers which model version each holder searches instead of asking on every
query: the holder refuses a search or lookup by any other version, and a similarity of two
payloads (which touches no index) asks the holder while it embeds. A query that meets a
refusal learns the new version and is answered again, wholly by it, so every answer is
still made by one version and all replicas switch when the holder does.

Searches and id lookups are answered from the replica's own copy of the index when it holds
the query's version and its lease runs (pipeline/index/replica_copy.py), which saves the
holder round trip; otherwise they go to the holder, batched (services/api/batching.py).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
from ray.actor import ActorHandle

from pipeline.embed.model import EmbeddingModel
from pipeline.index.feed import FeedPosition, FeedReply
from pipeline.index.handles import ModelCache
from pipeline.index.holder import StaleVersionError
from pipeline.index.replica_copy import IndexCopy, Poll
from pipeline.index.vector_index import Hit, VectorIndex
from pipeline.settings import Settings
from schemas.items import Modality
from services.api.batching import SearchBatches
from services.api.metrics import METRICS

T = TypeVar("T")


class VersionRouter:
    def __init__(
        self, settings: Settings, holders: dict[Modality, ActorHandle], models: ModelCache
    ) -> None:
        self._holders = holders
        self._models = models
        self._searches = SearchBatches(settings, holders)
        # modality -> the version its holder searched when this replica last heard.
        self._versions: dict[Modality, str] = {}
        self._copies = (
            {m: IndexCopy(_feed(h)) for m, h in holders.items()}
            if settings.api_index_copies
            else {}
        )

    async def holder_versions(self) -> dict[Modality, str]:
        """What every holder searches now, asked rather than remembered."""
        versions = await asyncio.gather(
            *(h.active_version.remote() for h in self._holders.values())
        )
        return dict(zip(self._holders, versions, strict=True))

    async def model(self, version: str) -> EmbeddingModel:
        """Off the event loop only when the artifact must be read from disk."""
        return self._models.loaded(version) or await asyncio.to_thread(self._models.get, version)

    async def active_model(self, modality: Modality) -> EmbeddingModel:
        version = self._versions.get(modality)
        if version is None:
            version = await self._learn_version(modality)
        return await self.model(version)

    async def confirm(self, modality: Modality, version: str) -> None:
        """Raise StaleVersionError unless `version` still answers for `modality`."""
        copy = self._copies.get(modality)
        current = copy.version if copy is not None else None
        if current is None:
            current = await self._learn_version(modality)
        if current != version:
            raise StaleVersionError(f"the {modality.value} index switched away from {version}")

    async def retrying_switches(self, modality: Modality, query: Callable[[], Awaitable[T]]) -> T:
        """A query that raced a model switch is answered again, wholly with the new version."""
        try:
            return await query()
        except StaleVersionError:
            await self._learn_version(modality)
            return await query()

    async def vector(self, modality: Modality, version: str, item_id: str) -> np.ndarray | None:
        index = self._copy(modality, version)
        if index is not None:
            return index.vector(item_id)
        found = await self._holders[modality].vector.remote(version, item_id)
        return None if found is None else found[0]

    async def search(
        self, modality: Modality, version: str, vector: np.ndarray, k: int, label: str | None
    ) -> list[Hit]:
        index = self._copy(modality, version)
        if index is not None:
            return index.search(vector[np.newaxis], k, label)[0]
        return await self._searches.search(modality, version, vector, k, label)

    async def _learn_version(self, modality: Modality) -> str:
        version = self._versions[modality] = await self._holders[modality].active_version.remote()
        return version

    def _copy(self, modality: Modality, version: str) -> VectorIndex | None:
        """The replica's copy of the index if it may answer for `version` now; counts the read."""
        copy = self._copies.get(modality)
        index = None
        if copy is not None:
            copy.start()
            index = copy.index(version)
        METRICS.index_reads.labels(modality.value, "holder" if index is None else "copy").inc()
        return index


def _feed(holder: ActorHandle) -> Poll:
    async def poll(copy_id: str, position: FeedPosition | None) -> FeedReply:
        return await holder.changes.remote(copy_id, position)

    return poll
