"""Concurrent queries of one replica share encoder forward passes and index searches.

A CNN forward pass over 16 inputs costs little more than over one, and one call
to an index holder carrying 16 query vectors costs about what one carrying a
single vector does, so requests that arrive together are stacked by Ray Serve's
`@serve.batch`. It keeps one queue per decorated function — not per instance —
and runs a batch with the first request's `self`, so decorating a method would
let one batch mix model versions during a switch. Each model version therefore
gets its own decorated functions: a batch only ever holds work for one version,
and a query is embedded and searched by the version it asked for.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import numpy as np
from ray import serve

from pipeline.embed.model import EmbeddingModel
from pipeline.index.replica_reads import ReplicaReads
from pipeline.index.vector_index import Hit
from pipeline.settings import Settings
from schemas.items import Modality
from services.api.metrics import METRICS

# Versions kept per replica: the serving one and the one being switched in or out.
KEPT_VERSIONS = 4

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")
Batch = Callable[[list[T]], Awaitable[list[R]]]


class _Queues(Generic[K, T, R]):
    """One `@serve.batch` queue per key (a model, or a modality and version), made on first use."""

    def __init__(self, settings: Settings, make: Callable[[K], Batch[T, R]]) -> None:
        size = settings.api_batch_max_size
        self._decorate: Callable[[Batch[T, R]], Callable[[T], Awaitable[R]]] = (
            serve.batch(max_batch_size=size, batch_wait_timeout_s=settings.api_batch_wait_s)
            if size > 1
            else _one_at_a_time
        )
        self._make = make
        self._queues: dict[K, Callable[[T], Awaitable[R]]] = {}

    async def submit(self, key: K, item: T) -> R:
        queue = self._queues.get(key)
        if queue is None:
            if len(self._queues) >= KEPT_VERSIONS:
                # Oldest first (dicts keep insertion order); a retired version's queue
                # is idle, and a straggler for it would only get a fresh one.
                del self._queues[next(iter(self._queues))]
            queue = self._queues[key] = self._decorate(self._make(key))
        return await queue(item)


def _one_at_a_time(batch: Batch[T, R]) -> Callable[[T], Awaitable[R]]:
    """Batches of one without Serve's queue: its hops are all it would add."""

    async def one(item: T) -> R:
        return (await batch([item]))[0]

    return one


class EncoderBatches:
    """`embed` takes one decoded input and returns its vector, made in a shared pass.

    Every pass runs on one dedicated thread: torch keeps an intra-op thread team per
    calling thread, and passes spread over a thread pool would keep several teams
    spinning against each other (measured: a third fewer queries per second on 2 cores).
    """

    def __init__(self, settings: Settings) -> None:
        self._queues: _Queues[EmbeddingModel, np.ndarray, np.ndarray] = _Queues(
            settings, partial(_forward, ThreadPoolExecutor(1, thread_name_prefix="encoder"))
        )

    async def embed(self, model: EmbeddingModel, decoded: np.ndarray) -> np.ndarray:
        return await self._queues.submit(model, decoded)


def _forward(encoder: Executor, model: EmbeddingModel) -> Batch[np.ndarray, np.ndarray]:
    async def forward(inputs: list[np.ndarray]) -> list[np.ndarray]:
        METRICS.batch_size.labels(model.config.modality.value).observe(len(inputs))
        # Off the event loop, so requests keep arriving (and queueing for the next
        # batch) meanwhile.
        loop = asyncio.get_running_loop()
        return list(await loop.run_in_executor(encoder, model.embed, np.stack(inputs)))

    return forward


@dataclass(frozen=True)
class _Search:
    vector: np.ndarray
    k: int
    label: str | None


class SearchBatches:
    """`search` sends one query to one index shard (one of its replicas), in one call with its
    neighbours.

    Queries with the same label filter share a call that asks for the largest `k`
    among them; each gets its own first `k` back, which is exactly its answer.
    """

    def __init__(self, settings: Settings, reads: ReplicaReads) -> None:
        self._reads = reads
        self._queues: _Queues[tuple[Modality, int, str], _Search, list[Hit]] = _Queues(
            settings, self._searcher
        )

    def _searcher(self, key: tuple[Modality, int, str]) -> Batch[_Search, list[Hit]]:
        modality, shard, version = key

        async def search(queries: list[_Search]) -> list[list[Hit]]:
            by_label: dict[str | None, list[int]] = {}
            for position, query in enumerate(queries):
                by_label.setdefault(query.label, []).append(position)
            answers = await asyncio.gather(
                *(
                    self._reads.ask(
                        modality,
                        shard,
                        lambda h, label=label, positions=positions: h.search.remote(
                            version,
                            np.stack([queries[p].vector for p in positions]),
                            max(queries[p].k for p in positions),
                            label,
                        ),
                    )
                    for label, positions in by_label.items()
                )
            )
            hits: list[list[Hit]] = [[] for _ in queries]
            for positions, rows in zip(by_label.values(), answers, strict=True):
                for position, row in zip(positions, rows, strict=True):
                    hits[position] = row[: queries[position].k]
            return hits

        return search

    async def search(
        self,
        modality: Modality,
        shard: int,
        version: str,
        vector: np.ndarray,
        k: int,
        label: str | None,
    ) -> list[Hit]:
        return await self._queues.submit((modality, shard, version), _Search(vector, k, label))
