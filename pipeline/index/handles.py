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
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from schemas.items import Modality

NAMESPACE = "twinstream"
# The active version, one being built and the one just replaced: more is never in use.
CACHED_MODELS = 3


# A modality's index actors by shard, each shard's replicas in order (replica 0 first).
Shards = list[list[ActorHandle]]


def holder_name(modality: Modality, shard: int, replica: int = 0) -> str:
    """Replica 0 keeps the name a shard had before replicas."""
    name = f"index-{modality.value}-{shard}"
    return name if replica == 0 else f"{name}-r{replica}"


def holder_handles(settings: Settings) -> dict[Modality, Shards]:
    """Each modality's index shards, by shard number (pipeline/index/shard_map.py), each a
    list of its replicas."""
    return {
        m: [
            [
                ray.get_actor(holder_name(m, s, r), namespace=NAMESPACE)
                for r in range(settings.index_replicas)
            ]
            for s in range(settings.index_shards)
        ]
        for m in Modality
    }


def every_replica(shards: Shards) -> list[ActorHandle]:
    return [replica for replicas in shards for replica in replicas]


async def shard_answers(
    holders: dict[Modality, Shards], call: Callable[[ActorHandle], Any]
) -> dict[Modality, list[list[Any]] | None]:
    """Every shard replica's answer to `call` (an actor method's `.remote(...)`): per shard, in
    shard order, the answers of its replicas that are up, first replica first; None for a
    modality one of whose shards has no replica up (Ray restarts them), which probes report
    rather than fail on. Any other error is raised."""
    replies = await asyncio.gather(
        *(call(h) for shards in holders.values() for h in every_replica(shards)),
        return_exceptions=True,
    )
    for reply in replies:
        if isinstance(reply, BaseException) and not isinstance(reply, RayActorError):
            raise reply
    answers = iter(replies)
    found: dict[Modality, list[list[Any]] | None] = {}
    for modality, shards in holders.items():
        live = [
            [a for a in [next(answers) for _ in replicas] if not isinstance(a, RayActorError)]
            for replicas in shards
        ]
        found[modality] = live if all(live) else None
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
