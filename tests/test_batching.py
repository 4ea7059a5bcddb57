"""Concurrent queries share forward passes and searches; a batch never mixes model versions.

`@serve.batch` only runs inside a Serve replica, so the checks run in one: small
deployments on the session's Serve instance embed interleaved queries for two model
versions at once, and send concurrent searches with different k and label filters to a
real holder actor, which they cannot answer from a replica's own copy of the index.
"""

import asyncio
import base64
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import ray
import torch
from ray import serve

from pipeline.data.orl import iter_orl
from pipeline.embed.config import ENCODERS
from pipeline.embed.encoders import build_encoder
from pipeline.embed.model import EmbeddingModel
from pipeline.index.holder import IndexHolder
from pipeline.index.replica_reads import ReplicaReads
from pipeline.inputs import decode
from pipeline.settings import Settings
from schemas.items import Modality
from services.api.batching import EncoderBatches, SearchBatches
from services.api.metrics import METRICS
from tests.test_holder import settings as holder_settings
from tests.test_holder import store as holder_store
from tests.test_holder import unit, upserts

settings, store = holder_settings, holder_store

QUERIES = 24
MAX_BATCH = 8


def _model(version: str, seed: int) -> EmbeddingModel:
    torch.manual_seed(seed)
    return EmbeddingModel(build_encoder(ENCODERS[Modality.FACE]), version, 0.5)


def _passes_and_items() -> tuple[float, float]:
    samples = {
        s.name: s.value
        for family in METRICS.registry.collect()
        for s in family.samples
        if family.name == "twinstream_embed_batch_items" and s.labels.get("modality") == "face"
    }
    return (
        samples.get("twinstream_embed_batch_items_count", 0.0),
        samples.get("twinstream_embed_batch_items_sum", 0.0),
    )


@serve.deployment(ray_actor_options={"num_cpus": 0})
class TwoVersions:
    def __init__(self, faces: list[bytes], max_batch: int) -> None:
        self._inputs = [decode(ENCODERS[Modality.FACE].input, face) for face in faces]
        self._models = [_model("face-v1", 1), _model("face-v2", 2)]
        self._batches = EncoderBatches(
            Settings(api_batch_max_size=max_batch, api_batch_wait_s=0.05)
        )

    async def run(self) -> tuple[float, float, float]:
        """Largest deviation from embedding each query alone, and passes/items run."""
        models = [self._models[i % 2] for i in range(len(self._inputs))]
        vectors = await asyncio.gather(
            *(self._batches.embed(m, x) for m, x in zip(models, self._inputs, strict=True))
        )
        alone = [m.embed(x[np.newaxis])[0] for m, x in zip(models, self._inputs, strict=True)]
        deviation = max(float(np.abs(v - a).max()) for v, a in zip(vectors, alone, strict=True))
        return (deviation, *_passes_and_items())


# 12 queries per version, at most 8 per pass: 8 + 4 for each of the two. A batch size of
# 1 runs every query in a pass of its own, without Serve's batching queue.
@pytest.mark.parametrize(("max_batch", "expected_passes"), [(MAX_BATCH, 4), (1, QUERIES)])
def test_concurrent_queries_of_two_versions_share_passes_without_mixing(
    stack, max_batch, expected_passes
):
    faces = [item.read_bytes() for item in list(iter_orl())[:QUERIES]]
    handle = serve.run(TwoVersions.bind(faces, max_batch), name="batching", route_prefix=None)
    try:
        deviation, passes, items = handle.run.remote().result()
    finally:
        serve.delete("batching")
    # Each query got the vector its own model makes: no pass mixed the two versions.
    assert deviation < 1e-4
    assert items == QUERIES
    assert passes == expected_passes


def test_concurrent_searches_answer_as_if_sent_alone(api, demo_data):
    """Batched searches ask the holder for the largest k per label filter and cut it."""
    probes = demo_data.held_out[Modality.FACE][:16]
    bodies = [
        {
            "modality": "face",
            "item": {"data": base64.b64encode(p.read_bytes()).decode()},
            "k": 1 + i % 7,
            "label": [None, "s3", p.label][i % 3],
        }
        for i, p in enumerate(probes)
    ]

    def ask(body):
        response = api.post("/v1/search", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    alone = [ask(body) for body in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(ask, bodies))
    # Batched forward passes may round differently in the last float bits.
    for batched, single, body in zip(together, alone, bodies, strict=True):
        assert [m["id"] for m in batched["matches"]] == [m["id"] for m in single["matches"]]
        assert [m["distance"] for m in batched["matches"]] == pytest.approx(
            [m["distance"] for m in single["matches"]], abs=1e-4
        )
        assert len(single["matches"]) == body["k"]
        assert body["label"] is None or {m["label"] for m in single["matches"]} == {body["label"]}


LABELS = ("a", "b", "c")


@serve.deployment(ray_actor_options={"num_cpus": 0})
class MergedSearches:
    def __init__(self, settings: Settings, max_batch: int) -> None:
        rng = np.random.default_rng(0)
        self._holder = ray.remote(IndexHolder).remote(settings, Modality.FACE)
        ids = [f"item-{i}" for i in range(60)]
        update = upserts(ids, {"face-v1": unit(rng, len(ids))}, offset=0)
        labels = [LABELS[i % len(LABELS)] for i in range(len(ids))]
        ray.get(self._holder.apply.remote(dataclasses.replace(update, labels=labels)))
        self._queries = unit(rng, QUERIES)
        self._batches = SearchBatches(
            Settings(api_batch_max_size=max_batch, api_batch_wait_s=0.05),
            ReplicaReads({Modality.FACE: [[self._holder]]}),
        )

    async def run(self) -> tuple[list, list]:
        """Each query's hits searched together with the others, and searched alone."""
        asks = [(q, 1 + i % 7, [None, *LABELS][i % 4]) for i, q in enumerate(self._queries)]
        together = await asyncio.gather(
            *(
                self._batches.search(Modality.FACE, 0, "face-v1", q, k, label)
                for q, k, label in asks
            )
        )
        alone = [
            (await self._holder.search.remote("face-v1", q[np.newaxis], k, label))[0]
            for q, k, label in asks
        ]
        return [[(h.item_id, h.label) for h in hits] for hits in together], [
            [(h.item_id, h.label) for h in hits] for hits in alone
        ]


def test_searches_batched_by_label_get_their_own_k_hits(stack, settings, store):
    handle = serve.run(MergedSearches.bind(settings, MAX_BATCH), name="searches", route_prefix=None)
    try:
        together, alone = handle.run.remote().result()
    finally:
        serve.delete("searches")
    assert together == alone
    # The asks cover every label filter with several k each, so the merge cut longest lists.
    assert [len(hits) for hits in alone] == [1 + i % 7 for i in range(QUERIES)]
    for i, hits in enumerate(alone):
        label = [None, *LABELS][i % 4]
        assert label is None or {h[1] for h in hits} == {label}
