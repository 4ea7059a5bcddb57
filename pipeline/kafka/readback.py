"""Payloads read back from the item topics, so a node's payload store is a cache of them.

Item topics are compacted: the newest record of every live item stays, at the position the
metadata store recorded when the item was indexed. A node that lacks an item's bytes (a
second node, a lost disk) reads them from there instead of needing a shared filesystem. A
record compaction has removed (a newer value of the item is on its way to the index) is not
found, and the caller goes on without it, as it does for an item deleted meanwhile.
"""

from collections import defaultdict
from collections.abc import Sequence

from kafka import TopicPartition

from pipeline.kafka.clients import make_consumer
from pipeline.kafka.ranges import read_ranges
from pipeline.settings import Settings
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord

# A read that receives nothing for this long is stuck (the broker went away), not slow.
STALL_TIMEOUT_S = 30.0


def fill_missing(settings: Settings, payloads: PayloadStore, items: Sequence[ItemRecord]) -> int:
    """Store the bytes of those `items` that `payloads` lacks; returns how many were found."""
    missing = [i for i in items if i.payload_sha256 and i.payload_sha256 not in payloads]
    found = recorded_payloads(settings, missing)
    if not found:
        return 0
    with payloads.exclusive():
        payloads.put_all(found.values())
    return len(found)


def recorded_payloads(settings: Settings, items: Sequence[ItemRecord]) -> dict[str, bytes]:
    """sha256 -> bytes of the records at the items' recorded positions whose bytes are the
    items' own."""
    wanted: dict[TopicPartition, dict[int, str]] = defaultdict(dict)
    for item in items:
        if item.payload_sha256:
            position = TopicPartition(item.source_topic, item.source_partition)
            wanted[position][item.source_offset] = item.payload_sha256
    if not wanted:
        return {}
    found: dict[str, bytes] = {}
    consumer = make_consumer(settings, group_id=None)
    try:
        log_ends = consumer.end_offsets(list(wanted))
        ranges = {
            tp: (min(offsets), min(max(offsets) + 1, log_ends[tp]))
            for tp, offsets in wanted.items()
        }
        for record in read_ranges(consumer, ranges, STALL_TIMEOUT_S):
            sha256 = wanted[TopicPartition(record.topic, record.partition)].get(record.offset)
            if record.value is not None and PayloadStore.address(record.value) == sha256:
                found[sha256] = record.value
        return found
    finally:
        consumer.close()
