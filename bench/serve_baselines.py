"""The two baselines `bench.serve` measures the query API against, in the same run.

(a) A no-op Ray Serve app: the same routes behind the same proxy, answering a
constant. It is the floor Serve itself sets; the API can only approach it.
(b) A plain uvicorn + FastAPI process doing the API's work for byte queries —
decode, embed with the same model artifact, FAISS search of the same vectors —
in one process, without Ray: what the API has to beat to justify its hops.
It answers `data` refs only (the bench sends bytes) and is not a product path.
"""

import argparse
import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from ray import serve

from pipeline.data.orl import iter_orl
from pipeline.embed.model import EmbeddingModel
from pipeline.index.vector_index import VectorIndex
from pipeline.inputs import decode
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from schemas.api import (
    ItemRef,
    SearchRequest,
    SearchResponse,
    SimilarityRequest,
    SimilarityResponse,
)
from schemas.items import Modality
from services.api.engine import search_response

noop_app = FastAPI()
NOOP_SEARCH: dict[str, Any] = {"matches": [], "model_version": "noop"}
NOOP_SIMILARITY: dict[str, Any] = {
    "distance": 0.0,
    "same": True,
    "threshold": 0.0,
    "model_version": "noop",
}


@noop_app.post("/v1/search")
async def noop_search(request: Request) -> dict[str, Any]:
    await request.body()
    return NOOP_SEARCH


@noop_app.post("/v1/similarity")
async def noop_similarity(request: Request) -> dict[str, Any]:
    await request.body()
    return NOOP_SIMILARITY


@serve.deployment(name="noop", ray_actor_options={"num_cpus": 0})
@serve.ingress(noop_app)
class NoopService:
    """Nothing but Serve's own path: proxy, router, replica, FastAPI."""


@contextmanager
def noop_serve_app(max_ongoing_requests: int) -> Iterator[str]:
    """The no-op app beside the running ones, at the route prefix yielded, until the block
    ends. With the API's admission limit: Serve's default (5) would queue a c = 32 load in the
    proxy and make the floor look lower than it is."""
    noop = NoopService.options(max_ongoing_requests=max_ongoing_requests)
    serve.run(noop.bind(), name="noop", route_prefix="/noop")
    try:
        yield "/noop"
    finally:
        serve.delete("noop")


def plain_app(settings: Settings) -> FastAPI:
    """The face query path in one process: the active model, a FAISS index of the ORL faces."""
    store = MetadataStore.from_settings(settings)
    record = store.active_model(Modality.FACE)
    if record is None:
        raise LookupError("no active face model")
    model = EmbeddingModel.from_record(record, ModelArtifacts(store, settings.models_dir))
    faces = list(iter_orl())
    index = VectorIndex(model.embedding_dim)
    inputs = np.stack([decode(model.config.input, face.read_bytes()) for face in faces])
    index.upsert([f.id for f in faces], model.embed(inputs), [f.label for f in faces])
    app = FastAPI()

    def embed(ref: ItemRef) -> np.ndarray:
        return model.embed(decode(model.config.input, ref.payload())[np.newaxis])[0]

    @app.post("/v1/search")
    async def search(request: SearchRequest) -> SearchResponse:
        vector = await asyncio.to_thread(embed, request.item)
        hits = index.search(vector[np.newaxis], request.k, request.label)[0]
        return search_response(model, hits)

    @app.post("/v1/similarity")
    async def similarity(request: SimilarityRequest) -> SimilarityResponse:
        a, b = await asyncio.gather(
            asyncio.to_thread(embed, request.a),
            asyncio.to_thread(embed, request.b),
        )
        distance = float(model.energy.from_squared_l2(np.asarray([np.sum((a - b) ** 2)]))[0])
        return SimilarityResponse(
            distance=distance,
            same=distance <= model.threshold,
            threshold=model.threshold,
            model_version=model.version,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(plain_app(Settings()), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
