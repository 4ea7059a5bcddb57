"""The query logic behind the routers: resolve item refs to vectors, search, compare.

Decoding and embedding run in worker threads so a slow one never stalls the event
loop that the replica's other requests share; forward passes are shared with concurrent
requests (services/api/batching.py). Which model version and which index answer is the
router's business (services/api/routing.py), and what `/readyz` checks is
services/api/readiness.py.
"""

import asyncio
import dataclasses
from collections.abc import Sequence

import numpy as np

from pipeline.decode.errors import DecodeError
from pipeline.embed.model import EmbeddingModel
from pipeline.index.handles import ModelCache, Shards
from pipeline.index.vector_index import Hit
from pipeline.inputs import Decoded, decode_detailed
from pipeline.settings import Settings
from schemas.api import (
    FaceBox,
    ItemRef,
    Match,
    QueryFace,
    SearchRequest,
    SearchResponse,
    SimilarityRequest,
    SimilarityResponse,
)
from schemas.items import Modality
from services.api.batching import EncoderBatches
from services.api.problems import ProblemError, not_found, too_large, unprocessable
from services.api.routing import VersionRouter


class QueryEngine:
    def __init__(
        self,
        settings: Settings,
        holders: dict[Modality, Shards],
        models: ModelCache,
    ) -> None:
        self.settings = settings
        self._batches = EncoderBatches(settings)
        # Public: readiness asks the same router which versions the index shards serve.
        self.router = VersionRouter(settings, holders, models)

    async def similarity(self, request: SimilarityRequest) -> SimilarityResponse:
        return await self.router.retrying_switches(
            request.modality, lambda: self._similarity(request)
        )

    async def search(self, request: SearchRequest) -> SearchResponse:
        return await self.router.retrying_switches(request.modality, lambda: self._search(request))

    async def _similarity(self, request: SimilarityRequest) -> SimilarityResponse:
        modality = request.modality
        model = await self.router.active_model(modality)
        lookups = [self._vector(model, modality, ref) for ref in (request.a, request.b)]
        if request.a.id is None and request.b.id is None:
            # No holder lookup would notice a switch: ask while the payloads embed.
            lookups.append(self.router.confirm(modality, model.version))
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

    async def _search(self, request: SearchRequest) -> SearchResponse:
        model = await self.router.active_model(request.modality)
        if request.item.id is not None:
            hits = await self.router.search_by_id(
                request.modality, model.version, request.item.id, request.k, request.label
            )
            if hits is None:
                raise _not_indexed(request.modality, request.item.id)
            return search_response(model, hits)
        vector, face = await self._vector(model, request.modality, request.item)
        hits = await self.router.search(
            request.modality, model.version, vector, request.k, request.label
        )
        return search_response(model, hits, face)

    async def _vector(
        self, model: EmbeddingModel, modality: Modality, ref: ItemRef
    ) -> tuple[np.ndarray, QueryFace | None]:
        """The ref's vector, and where its face was when it is a photo sent with the query."""
        if ref.id is not None:
            vector = await self.router.vector(modality, model.version, ref.id)
            if vector is None:
                raise _not_indexed(modality, ref.id)
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

    async def _embed(self, model: EmbeddingModel, payload: bytes) -> tuple[np.ndarray, Decoded]:
        decoded = await asyncio.to_thread(decode_detailed, model.config.input, payload)
        return await self._batches.embed(model, decoded.x), decoded


def _not_indexed(modality: Modality, item_id: str) -> ProblemError:
    return not_found(f"no {modality.value} item with id {item_id!r} is indexed")


def _query_face(decoded: Decoded) -> QueryFace | None:
    if decoded.face is None:
        return None
    box = FaceBox(**dataclasses.asdict(decoded.face))
    return QueryFace(box=box, faces_found=decoded.faces_found)


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
