"""Reads of a replicated shard on real Ray actors: replicas take turns, a replica that is gone
is failed over to, only a shard with no replica left fails the read, and a replica behind the
others is read only when none that caught up answers."""

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
        self._offsets = {0: 10, 1: 10}

    def name(self) -> str:
        return self._name

    def offsets(self) -> dict[int, int]:
        return self._offsets

    def set_offsets(self, offsets: dict[int, int]) -> None:
        self._offsets = offsets


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


def _names_after_checks(reads: ReplicaReads, times: int) -> list[str]:
    """Two reads that each start a check of the replicas' offsets and let it finish (the
    first check learns where they are, the second who has not got there), then `times`."""

    async def ask() -> list[str]:
        for _ in range(2):
            await reads.ask(Modality.FACE, 0, lambda h: h.name.remote())
            await asyncio.sleep(0.5)
        return [await reads.ask(Modality.FACE, 0, lambda h: h.name.remote()) for _ in range(times)]

    return asyncio.run(ask())


@pytest.mark.usefixtures("stack")
def test_a_replica_behind_the_others_is_read_only_when_no_other_answers():
    a, b = (_Replica.remote(n) for n in "ab")
    reads = ReplicaReads({Modality.FACE: [[a, b]]}, check_s=0)
    assert sorted(_names_after_checks(reads, 4)) == ["a", "a", "b", "b"]
    # `a` restarted from an older checkpoint: partition 0 replays from offset 4.
    ray.get(a.set_offsets.remote({0: 4, 1: 10}))
    assert _names_after_checks(reads, 6) == ["b"] * 6
    # Caught up past where `b` was at the check before.
    ray.get(a.set_offsets.remote({0: 12, 1: 10}))
    ray.get(b.set_offsets.remote({0: 12, 1: 10}))
    assert sorted(_names_after_checks(reads, 4)) == ["a", "a", "b", "b"]
    ray.get(a.set_offsets.remote({0: 0, 1: 0}))
    assert _names_after_checks(reads, 3) == ["b"] * 3
    _kill(b)
    assert _names_after_checks(reads, 3) == ["a"] * 3
