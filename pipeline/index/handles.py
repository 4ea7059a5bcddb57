"""How the actors of one stack find each other and the models their indexes were built with.

Index holders (a modality's index shards) are named Ray actors; whoever embeds for a modality
(ingest actors, API replicas) asks its holders which model versions they hold and embeds with
exactly those, so a query and the index it searches never disagree.
"""

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from pipeline.embed.model import EmbeddingModel
from pipeline.store.artifacts import ModelArtifacts
from schemas.items import Modality

NAMESPACE = "twinstream"
# The active version, one being built and the one just replaced: more is never in use.
CACHED_MODELS = 3


def holder_name(modality: Modality, shard: int) -> str:
    return f"index-{modality.value}-{shard}"


def holder_handles(shards: int) -> dict[Modality, list[ActorHandle]]:
    """Each modality's index shards, by shard number (pipeline/index/shard_map.py)."""
    return {
        m: [ray.get_actor(holder_name(m, s), namespace=NAMESPACE) for s in range(shards)]
        for m in Modality
    }


async def shard_answers(
    holders: dict[Modality, list[ActorHandle]], call: Callable[[ActorHandle], Any]
) -> dict[Modality, list[Any] | None]:
    """Every shard's answer to `call` (an actor method's `.remote(...)`), in shard order; None
    for a modality one of whose shards is down (Ray restarts it), which probes report rather
    than fail on. Any other error is raised."""
    answers = await asyncio.gather(
        *(
            asyncio.gather(*(call(h) for h in shards), return_exceptions=True)
            for shards in holders.values()
        )
    )
    found: dict[Modality, list[Any] | None] = {}
    for modality, replies in zip(holders, answers, strict=True):
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, RayActorError):
                raise reply
        down = any(isinstance(reply, RayActorError) for reply in replies)
        found[modality] = None if down else list(replies)
    return found


def ingest_name(number: int) -> str:
    """Ingest actors are named too, so a metrics scrape can reach each one."""
    return f"ingest-{number}"


def ingest_handles() -> dict[str, ActorHandle]:
    """The stack's ingest actors: numbered from 0 without gaps (a restarting one keeps its name)."""
    handles: dict[str, ActorHandle] = {}
    while True:
        name = ingest_name(len(handles))
        try:
            handles[name] = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return handles


class ModelCache:
    """Model versions loaded on first use and kept while recently used; safe to share between
    threads (an ingest actor's reading and indexing threads both look models up)."""

    def __init__(self, artifacts: ModelArtifacts, size: int = CACHED_MODELS) -> None:
        self._artifacts = artifacts
        self._size = size
        self._models: OrderedDict[str, EmbeddingModel] = OrderedDict()
        self._lock = threading.RLock()

    def loaded(self, version: str) -> EmbeddingModel | None:
        """The model if it is in memory already: no I/O, so callers on an event loop can try
        this before handing `get` to a thread."""
        with self._lock:
            model = self._models.get(version)
            if model is not None:
                self._models.move_to_end(version)
            return model

    def get(self, version: str) -> EmbeddingModel:
        with self._lock:
            return self._get(version)

    def _get(self, version: str) -> EmbeddingModel:
        model = self.loaded(version)
        if model is None:
            record = self._artifacts.store.get_model(version)
            if record is None:
                raise LookupError(f"model {version} is not in the store")
            model = EmbeddingModel.from_record(record, self._artifacts)
            self._models[version] = model
            while len(self._models) > self._size:
                self._models.popitem(last=False)
        return model
