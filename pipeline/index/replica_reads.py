"""Reads from a shard's replicas: each read goes to the next replica in turn, so replicas share
the query load, and to the one after it if that replica is down (its node gone, or Ray
restarting it), so a query fails only when every replica of a shard is down.

Any replica may answer: each applies the same partitions in the same order, and a read names
the model version it wants, which a replica that has not flipped to it yet refuses
(`StaleVersionError`, answered again by the router) rather than answer by another.
"""

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from pipeline.index.handles import Shards
from schemas.items import Modality

T = TypeVar("T")


class ReplicaReads:
    def __init__(self, holders: dict[Modality, Shards]) -> None:
        self._holders = holders
        self._turn = itertools.count()

    def shards(self, modality: Modality) -> int:
        return len(self._holders[modality])

    async def ask(
        self, modality: Modality, shard: int, call: Callable[[ActorHandle], Awaitable[T]]
    ) -> T:
        """`call` (an actor method's `.remote(...)`) answered by one replica of the shard."""
        replicas = self._holders[modality][shard]
        first = next(self._turn) % len(replicas)
        for turn in range(len(replicas) - 1):
            try:
                return await call(replicas[(first + turn) % len(replicas)])
            except RayActorError:
                continue
        return await call(replicas[(first - 1) % len(replicas)])

    async def ask_every_shard(
        self, modality: Modality, call: Callable[[ActorHandle], Awaitable[Any]]
    ) -> list[Any]:
        """`call` answered by one replica of each shard, in shard order."""
        return await asyncio.gather(
            *(self.ask(modality, s, call) for s in range(self.shards(modality)))
        )
