"""Which index shard owns which partition of an item topic.

A modality's index is split into `count` shards, each an index holder (pipeline/index/holder.py)
owning a fixed set of the item topic's partitions: partition p belongs to shard p % count. An
item lives in the partition its key was produced to, so it lives in exactly one shard, and that
shard's offsets alone say how far its partitions are indexed: each shard keeps its own
exactly-once watermark and checkpoint.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardMap:
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("an index needs at least one shard")

    def owner(self, partition: int) -> int:
        return partition % self.count

    def owns(self, shard: int, partition: int) -> bool:
        return self.owner(partition) == shard
