"""The query logic behind the routers: resolve item refs to vectors, search, compare.

Decoding and embedding run in worker threads so a slow one never stalls the event
loop that the replica's other requests share; the forward pass is shared with
concurrent requests (services/api/batching.py).
"""

import asyncio
import socket

import numpy as np
from ray.actor import ActorHandle

from pipeline.decode.errors import DecodeError
from pipeline.decode.registry import decode
from pipeline.embed.model import EmbeddingModel
from pipeline.kafka.clients import bootstrap_servers
from pipeline.settings import Settings
from schemas.api import (
    ItemRef,
    Match,
    Readiness,
    SearchRequest,
    SearchResponse,
    SimilarityRequest,
    SimilarityResponse,
)
from schemas.items import Modality
from services.api.batching import EncoderBatches
from services.api.problems import not_found, too_large, unprocessable

KAFKA_PROBE_TIMEOUT_S = 1.0


class QueryEngine:
    def __init__(
        self,
        settings: Settings,
        holders: dict[Modality, ActorHandle],
        models: dict[Modality, EmbeddingModel],
    ) -> None:
        self.settings = settings
        self._holders = holders
        self._models = models
        self._batches = EncoderBatches(settings)

    def model_versions(self) -> dict[Modality, str]:
        return {modality: model.version for modality, model in self._models.items()}

    async def _embed(self, modality: Modality, payload: bytes) -> np.ndarray:
        decoded = await asyncio.to_thread(decode, modality, payload)
        return await self._batches.embed(self._models[modality], decoded)

    async def _vector(self, modality: Modality, ref: ItemRef) -> np.ndarray:
        if ref.id is not None:
            found = await self._holders[modality].vector.remote(ref.id)
            if found is None:
                raise not_found(f"no {modality.value} item with id {ref.id!r} is indexed")
            return found[0]
        try:
            payload = ref.payload()
        except ValueError as error:
            raise unprocessable(str(error)) from error
        if len(payload) > self.settings.max_item_bytes:
            raise too_large(
                f"item is {len(payload)} bytes, over the limit of {self.settings.max_item_bytes}"
            )
        try:
            return await self._embed(modality, payload)
        except DecodeError as error:
            raise unprocessable(str(error)) from error

    def _energy(self, modality: Modality, squared_l2: np.ndarray) -> np.ndarray:
        return self._models[modality].energy.from_squared_l2(squared_l2)

    async def similarity(self, request: SimilarityRequest) -> SimilarityResponse:
        model = self._models[request.modality]
        a, b = await asyncio.gather(
            self._vector(request.modality, request.a), self._vector(request.modality, request.b)
        )
        squared = np.asarray([np.sum((a - b) ** 2)], dtype=np.float64)
        distance = float(self._energy(request.modality, squared)[0])
        return SimilarityResponse(
            distance=distance,
            same=distance <= model.threshold,
            threshold=model.threshold,
            model_version=model.version,
        )

    async def search(self, request: SearchRequest) -> SearchResponse:
        model = self._models[request.modality]
        vector = await self._vector(request.modality, request.item)
        hits = (
            await self._holders[request.modality].search.remote(
                vector[np.newaxis], request.k, request.label
            )
        )[0]
        distances = self._energy(
            request.modality, np.asarray([h.squared_l2 for h in hits], dtype=np.float64)
        )
        return SearchResponse(
            matches=[
                Match(
                    id=h.item_id, label=h.label, distance=float(d), same=bool(d <= model.threshold)
                )
                for h, d in zip(hits, distances, strict=True)
            ],
            model_version=model.version,
        )

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
        checks = {
            "models_loaded": set(self._models) == set(Modality),
            "indexes_loaded": set(sizes) == set(Modality),
            "kafka_reachable": await asyncio.to_thread(self._kafka_reachable),
        }
        return Readiness(
            ready=all(checks.values()),
            checks=checks,
            model_versions=self.model_versions(),
            index_sizes=sizes,
        )
