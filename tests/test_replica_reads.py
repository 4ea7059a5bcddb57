"""Reads of a replicated shard on real Ray actors: replicas take turns, a replica that is gone
is failed over to, and only a shard with no replica left fails the read."""

import asyncio
import time

import pytest
import ray
from ray.exceptions import RayActorError

from pipeline.index.replica_reads import ReplicaReads
from schemas.items import Modality


@ray.remote(num_cpus=0)
class _Replica:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


def _kill(replica) -> None:
    """Killed for good, and gone: a call sent right after `ray.kill` may still be answered."""
    ray.kill(replica, no_restart=True)
    while True:
        try:
            ray.get(replica.name.remote())
        except RayActorError:
            return
        time.sleep(0.1)


def _names(reads: ReplicaReads, shard: int, times: int) -> list[str]:
    async def ask() -> list[str]:
        return [
            await reads.ask(Modality.FACE, shard, lambda h: h.name.remote()) for _ in range(times)
        ]

    return asyncio.run(ask())


@pytest.mark.usefixtures("stack")
def test_replicas_take_turns_and_a_lost_one_is_failed_over_to_the_other():
    a, b, c = (_Replica.remote(n) for n in "abc")
    reads = ReplicaReads({Modality.FACE: [[a, b], [c]]})
    assert _names(reads, 0, 4) == ["a", "b", "a", "b"]
    assert asyncio.run(reads.ask_every_shard(Modality.FACE, lambda h: h.name.remote())) in (
        ["a", "c"],
        ["b", "c"],
    )
    _kill(a)
    assert _names(reads, 0, 4) == ["b"] * 4
    _kill(b)
    with pytest.raises(RayActorError):
        _names(reads, 0, 1)
    assert _names(reads, 1, 2) == ["c", "c"]
