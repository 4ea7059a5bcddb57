"""Reads from a shard's replicas: each read goes to the next replica in turn, so replicas share
the query load, and to the one after it if that replica is down (its node gone, or Ray
restarting it), so a query fails only when every replica of a shard is down.

Any replica may answer: each applies the same partitions in the same order, and a read names
the model version it wants, which a replica that has not flipped to it yet refuses
(`StaleVersionError`, answered again by the router) rather than answer by another.

A replica restarted from an older checkpoint answers from it while ingest replays the rest, so
it is asked only when no replica that has caught up answers. Every CHECK_S a shard's replicas
are asked for their offsets: one that has not yet reached where the most advanced replica was
at the check before is behind. Replicas fed the same batches are never that far apart; one
replaying a backlog is.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from pipeline.index.handles import Shards
from pipeline.index.shards import applied_anywhere
from schemas.items import Modality

log = logging.getLogger(__name__)

T = TypeVar("T")
CHECK_S = 1.0

Offsets = dict[int, int]


class _Freshness:
    """Which replicas of one shard are behind, from their offsets at the last two checks."""

    def __init__(self) -> None:
        self.behind: frozenset[int] = frozenset()
        self._checked_at = -float("inf")
        self._leading: Offsets = {}
        self._checking: asyncio.Task[None] | None = None

    def check_if_due(self, replicas: list[ActorHandle], label: str, every_s: float) -> None:
        if self._checking is not None or time.monotonic() - self._checked_at < every_s:
            return
        self._checked_at = time.monotonic()
        self._checking = asyncio.create_task(self._check(replicas, label))

    async def _check(self, replicas: list[ActorHandle], label: str) -> None:
        try:
            answers = await asyncio.gather(
                *(r.offsets.remote() for r in replicas), return_exceptions=True
            )
            offsets = {n: a for n, a in enumerate(answers) if isinstance(a, dict)}
            behind = frozenset(
                n
                for n, held in offsets.items()
                if any(held.get(p, 0) < at for p, at in self._leading.items())
            )
            if behind != self.behind:
                log.info(
                    "%s: replicas %s behind the others, read only if no other answers",
                    label,
                    sorted(behind) or "none",
                )
            self.behind = behind
            self._leading = applied_anywhere(offsets.values())
        finally:
            self._checking = None


class ReplicaReads:
    def __init__(self, holders: dict[Modality, Shards], check_s: float = CHECK_S) -> None:
        self._holders = holders
        self._turn = itertools.count()
        self._check_s = check_s
        self._freshness: dict[tuple[Modality, int], _Freshness] = {}

    def shards(self, modality: Modality) -> int:
        return len(self._holders[modality])

    async def ask(
        self, modality: Modality, shard: int, call: Callable[[ActorHandle], Awaitable[T]]
    ) -> T:
        """`call` (an actor method's `.remote(...)`) answered by one replica of the shard: the
        next one in turn among those caught up, then the others."""
        replicas = self._holders[modality][shard]
        behind: frozenset[int] = frozenset()
        if len(replicas) > 1:
            freshness = self._freshness.setdefault((modality, shard), _Freshness())
            freshness.check_if_due(replicas, f"{modality.value} shard {shard}", self._check_s)
            behind = freshness.behind
        first = next(self._turn)
        turns = [(first + turn) % len(replicas) for turn in range(len(replicas))]
        order = [n for n in turns if n not in behind] + [n for n in turns if n in behind]
        for n in order[:-1]:
            try:
                return await call(replicas[n])
            except RayActorError:
                continue
        return await call(replicas[order[-1]])

    async def ask_every_shard(
        self, modality: Modality, call: Callable[[ActorHandle], Awaitable[Any]]
    ) -> list[Any]:
        """`call` answered by one replica of each shard, in shard order."""
        return await asyncio.gather(
            *(self.ask(modality, s, call) for s in range(self.shards(modality)))
        )
