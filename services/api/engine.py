"""The query logic behind the routers: resolve item refs to vectors, search, compare.

Decoding and embedding run in worker threads so a slow one never stalls the event
loop that the replica's other requests share; forward passes and index searches
are shared with concurrent requests (services/api/batching.py).

A replica remembers which model version each holder searches instead of asking on every
query: the holder refuses a search or lookup by any other version, and a similarity of two
payloads (which touches no index) asks the holder while it embeds. A query that meets a
refusal learns the new version and is answered again, wholly by it, so every answer is
still made by one version and all replicas switch when the holder does.

Searches and id lookups are answered from the replica's own copy of the index when it holds
the query's version and its lease runs (pipeline/index/replica_copy.py), which saves the
holder round trip; otherwise they go to the holder, batched.
"""

import asyncio
import dataclasses
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np
from ray.actor import ActorHandle

from pipeline.decode.errors import DecodeError
from pipeline.embed.model import EmbeddingModel
from pipeline.index.feed import FeedPosition, FeedReply
from pipeline.index.handles import ModelCache
from pipeline.index.holder import StaleVersionError
from pipeline.index.replica_copy import IndexCopy, Poll
from pipeline.index.vector_index import Hit, VectorIndex
from pipeline.inputs import Decoded, decode_detailed
from pipeline.kafka.clients import bootstrap_servers
from pipeline.settings import Settings
from schemas.api import (
    FaceBox,
    ItemRef,
    Match,
    QueryFace,
    Readiness,
    SearchRequest,
    SearchResponse,
    SimilarityRequest,
    SimilarityResponse,
)
from schemas.items import Modality
from services.api.batching import EncoderBatches, SearchBatches
from services.api.metrics import METRICS
from services.api.problems import not_found, too_large, unprocessable

KAFKA_PROBE_TIMEOUT_S = 1.0
T = TypeVar("T")


class QueryEngine:
    def __init__(
        self, settings: Settings, holders: dict[Modality, ActorHandle], models: ModelCache
    ) -> None:
        self.settings = settings
        self._holders = holders
        self._models = models
        self._batches = EncoderBatches(settings)
        self._searches = SearchBatches(settings, holders)
        # modality -> the version its holder searched when this replica last heard.
        self._versions: dict[Modality, str] = {}
        self._copies = (
            {m: IndexCopy(_feed(h)) for m, h in holders.items()}
            if settings.api_index_copies
            else {}
        )

    async def model_versions(self) -> dict[Modality, str]:
        versions = await asyncio.gather(
            *(h.active_version.remote() for h in self._holders.values())
        )
        return dict(zip(self._holders, versions, strict=True))

    async def _active_model(self, modality: Modality) -> EmbeddingModel:
        version = self._versions.get(modality)
        if version is None:
            version = await self._learn_version(modality)
        return await self._model(version)

    async def _learn_version(self, modality: Modality) -> str:
        version = self._versions[modality] = await self._holders[modality].active_version.remote()
        return version

    async def _confirm_version(self, modality: Modality, version: str) -> None:
        copy = self._copies.get(modality)
        current = copy.version if copy is not None else None
        if current is None:
            current = await self._learn_version(modality)
        if current != version:
            raise StaleVersionError(f"the {modality.value} index switched away from {version}")

    def _copy(self, modality: Modality, version: str) -> VectorIndex | None:
        """The replica's copy of the index if it may answer for `version` now; counts the read."""
        copy = self._copies.get(modality)
        index = None
        if copy is not None:
            copy.start()
            index = copy.index(version)
        METRICS.index_reads.labels(modality.value, "holder" if index is None else "copy").inc()
        return index

    async def _indexed_vector(
        self, model: EmbeddingModel, modality: Modality, item_id: str
    ) -> np.ndarray | None:
        index = self._copy(modality, model.version)
        if index is not None:
            return index.vector(item_id)
        found = await self._holders[modality].vector.remote(model.version, item_id)
        return None if found is None else found[0]

    async def _model(self, version: str) -> EmbeddingModel:
        """Off the event loop only when the artifact must be read from disk."""
        return self._models.loaded(version) or await asyncio.to_thread(self._models.get, version)

    async def _embed(self, model: EmbeddingModel, payload: bytes) -> tuple[np.ndarray, Decoded]:
        decoded = await asyncio.to_thread(decode_detailed, model.config.input, payload)
        return await self._batches.embed(model, decoded.x), decoded

    async def _vector(
        self, model: EmbeddingModel, modality: Modality, ref: ItemRef
    ) -> tuple[np.ndarray, QueryFace | None]:
        """The ref's vector, and where its face was when it is a photo sent with the query."""
        if ref.id is not None:
            vector = await self._indexed_vector(model, modality, ref.id)
            if vector is None:
                raise not_found(f"no {modality.value} item with id {ref.id!r} is indexed")
            return vector, None
        try:
            payload = ref.payload()
        except ValueError as error:
            raise unprocessable(str(error)) from error
        if len(payload) > self.settings.max_item_bytes:
            raise too_large(
                f"item is {len(payload)} bytes, over the limit of {self.settings.max_item_bytes}"
            )
        try:
            vector, decoded = await self._embed(model, payload)
        except DecodeError as error:
            raise unprocessable(str(error)) from error
        return vector, _query_face(decoded)

    async def similarity(self, request: SimilarityRequest) -> SimilarityResponse:
        return await self._retrying_switches(request.modality, lambda: self._similarity(request))

    async def _similarity(self, request: SimilarityRequest) -> SimilarityResponse:
        modality = request.modality
        model = await self._active_model(modality)
        lookups = [self._vector(model, modality, ref) for ref in (request.a, request.b)]
        if request.a.id is None and request.b.id is None:
            # No holder lookup would notice a switch: ask while the payloads embed.
            lookups.append(self._confirm_version(modality, model.version))
        (a, a_face), (b, b_face), *_ = await asyncio.gather(*lookups)
        squared = np.asarray([np.sum((a - b) ** 2)], dtype=np.float64)
        distance = float(model.energy.from_squared_l2(squared)[0])
        faces = {name: face for name, face in (("a", a_face), ("b", b_face)) if face is not None}
        return SimilarityResponse(
            distance=distance,
            same=distance <= model.threshold,
            threshold=model.threshold,
            model_version=model.version,
            faces=faces,
        )

    async def search(self, request: SearchRequest) -> SearchResponse:
        return await self._retrying_switches(request.modality, lambda: self._search(request))

    async def _retrying_switches(self, modality: Modality, query: Callable[[], Awaitable[T]]) -> T:
        """A query that raced a model switch is answered again, wholly with the new version."""
        try:
            return await query()
        except StaleVersionError:
            await self._learn_version(modality)
            return await query()

    async def _search(self, request: SearchRequest) -> SearchResponse:
        model = await self._active_model(request.modality)
        vector, face = await self._vector(model, request.modality, request.item)
        index = self._copy(request.modality, model.version)
        if index is not None:
            hits = index.search(vector[np.newaxis], request.k, request.label)[0]
        else:
            hits = await self._searches.search(
                request.modality, model.version, vector, request.k, request.label
            )
        return search_response(model, hits, face)

    def _kafka_reachable(self) -> bool:
        host, _, port = bootstrap_servers(self.settings)[0].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), KAFKA_PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False

    async def readiness(self) -> Readiness:
        sizes = dict(
            zip(
                self._holders,
                await asyncio.gather(*(h.size.remote() for h in self._holders.values())),
                strict=True,
            )
        )
        versions = await self.model_versions()
        loaded = await asyncio.gather(
            *(self._model(v) for v in versions.values()),
            return_exceptions=True,
        )
        checks = {
            "models_loaded": not any(isinstance(m, Exception) for m in loaded),
            "indexes_loaded": set(sizes) == set(Modality),
            "kafka_reachable": await asyncio.to_thread(self._kafka_reachable),
        }
        return Readiness(
            ready=all(checks.values()),
            checks=checks,
            model_versions=versions,
            index_sizes=sizes,
        )


def _query_face(decoded: Decoded) -> QueryFace | None:
    if decoded.face is None:
        return None
    box = FaceBox(**dataclasses.asdict(decoded.face))
    return QueryFace(box=box, faces_found=decoded.faces_found)


def _feed(holder: ActorHandle) -> Poll:
    async def poll(copy_id: str, position: FeedPosition | None) -> FeedReply:
        return await holder.changes.remote(copy_id, position)

    return poll


def search_response(
    model: EmbeddingModel, hits: Sequence[Hit], query_face: QueryFace | None = None
) -> SearchResponse:
    """Index hits (squared L2) as the API answers them: in the model's energy, judged by its
    calibrated threshold, named by its version."""
    distances = model.energy.from_squared_l2(
        np.asarray([h.squared_l2 for h in hits], dtype=np.float64)
    )
    return SearchResponse(
        matches=[
            Match(id=h.item_id, label=h.label, distance=float(d), same=bool(d <= model.threshold))
            for h, d in zip(hits, distances, strict=True)
        ],
        model_version=model.version,
        query_face=query_face,
    )
