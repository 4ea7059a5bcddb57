"""Reading bounded stretches of partitions with a consumer of no group: the records between two
offsets of each, then stop. Used to read payloads back and to list the newest dead letters."""

import time
from collections.abc import Iterator, Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaTimeoutError

POLL_TIMEOUT_MS = 500


def read_ranges(
    consumer: KafkaConsumer,
    ranges: Mapping[TopicPartition, tuple[int, int]],
    stall_timeout_s: float,
) -> Iterator[ConsumerRecord]:
    """The records at offsets [start, end) of each partition, in order within one (fewer where
    compaction removed some). KafkaTimeoutError when nothing arrives for `stall_timeout_s` while
    a partition is short of its end: a broker gone away, not a slow one (a route answers 503)."""
    ranges = {tp: (start, end) for tp, (start, end) in ranges.items() if start < end}
    if not ranges:
        return
    consumer.assign(list(ranges))
    for tp, (start, _) in ranges.items():
        consumer.seek(tp, start)
    last_progress = time.monotonic()
    while any(consumer.position(tp) < end for tp, (_, end) in ranges.items()):
        if time.monotonic() - last_progress > stall_timeout_s:
            raise KafkaTimeoutError(f"reading {sorted(ranges)} stalled")
        for tp, records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).items():
            last_progress = time.monotonic()
            yield from (record for record in records if record.offset < ranges[tp][1])
        # Partitions read far enough fetch no more while the others catch up.
        consumer.pause(*(tp for tp, (_, end) in ranges.items() if consumer.position(tp) >= end))
