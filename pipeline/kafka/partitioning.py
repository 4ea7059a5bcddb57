"""Which partition a keyed record goes to when its producer lets the partitioner choose.

The contract asks producers to let murmur2 place keyed records (the Java client's and
kafka-python's default), so this is where an item's id says it lives: the API asks that
partition's index shard for an item first, and every shard only when it is not there.
"""

from kafka.partitioner.default import murmur2


def key_partition(key: str, partitions: int) -> int:
    """The partition of `partitions` the default partitioner picks for `key`."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
