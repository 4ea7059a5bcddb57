"""Concurrent queries of one replica share encoder forward passes.

A CNN forward pass over 16 inputs costs little more than over one, so requests
that arrive together are stacked into one pass by Ray Serve's `@serve.batch`.
`@serve.batch` keeps one queue per decorated function — not per instance — and
runs a batch with the first request's `self`, so decorating a method would let
one batch mix model versions during a switch. Each model version therefore gets
its own decorated function: a batch only ever holds inputs for one version, and
the vector a query gets back was made by the model it asked for.
"""

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
from ray import serve

from pipeline.embed.model import EmbeddingModel
from pipeline.settings import Settings
from services.api.metrics import METRICS

# Versions kept per replica: the serving one and the one being switched in or out.
KEPT_VERSIONS = 4

Embed = Callable[[np.ndarray], Awaitable[np.ndarray]]


def _batched(model: EmbeddingModel, max_batch_size: int, wait_s: float) -> Embed:
    async def forward(inputs: list[np.ndarray]) -> list[np.ndarray]:
        # The pass runs in a worker thread so requests keep arriving (and queueing
        # for the next batch) on the replica's event loop meanwhile.
        METRICS.batch_size.labels(model.config.modality.value).observe(len(inputs))
        vectors = await asyncio.to_thread(model.embed, np.stack(inputs))
        return list(vectors)

    return serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_s)(forward)


class EncoderBatches:
    """One batching queue per model version; `embed` takes one decoded input, returns its vector."""

    def __init__(self, settings: Settings) -> None:
        self._max_batch_size = settings.api_batch_max_size
        self._wait_s = settings.api_batch_wait_s
        self._queues: dict[str, Embed] = {}

    def _queue(self, model: EmbeddingModel) -> Embed:
        queue = self._queues.get(model.version)
        if queue is None:
            if len(self._queues) >= KEPT_VERSIONS:
                # Oldest first (dicts keep insertion order); a retired version's queue
                # is idle, and a straggler for it would only get a fresh one.
                del self._queues[next(iter(self._queues))]
            queue = _batched(model, self._max_batch_size, self._wait_s)
            self._queues[model.version] = queue
        return queue

    async def embed(self, model: EmbeddingModel, decoded: np.ndarray) -> np.ndarray:
        return await self._queue(model)(decoded)
