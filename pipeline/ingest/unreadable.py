"""A partition whose fetched batch the consumer cannot read (a codec it lacks or does not know,
a corrupt batch): stopped where it is, reported, and never retried in a loop.

kafka-python 3 raises such an error from `poll` once, then keeps the failed batch as the next
one in line: every later poll takes nothing from it and tries again without returning, a core
spinning and a stop that never comes. Stopping the partition drops that batch and pauses the
partition, so the others go on; a fresh consumer (a restart, once the cause is gone) fetches it
again from the index's offsets, so nothing is skipped.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import Fetcher

# The generator in which kafka-python unpacks (decompresses, checks) a partition's fetched batches.
_UNPACKING = "_unpack_records"


@dataclass(frozen=True)
class StoppedPartition:
    topic: str
    partition: int
    # The offset no record of which could be read: where the partition resumes.
    offset: int
    error: str
    error_type: str
    since: float


def _frames(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def _failed_batch(error: BaseException) -> Fetcher.PartitionRecords | None:
    """The fetched records whose unpacking raised `error`, if it was raised there."""
    for tb in _frames(error.__traceback__):
        if tb.tb_frame.f_code.co_name == _UNPACKING:
            records = tb.tb_frame.f_locals.get("self")
            if isinstance(records, Fetcher.PartitionRecords):
                return records
    return None


def stop_unreadable(consumer: KafkaConsumer, error: BaseException) -> StoppedPartition | None:
    """Stop the partition whose batch `poll` could not read and say where; None when `error`
    did not come from reading a batch (the caller handles it as any other failure)."""
    records = _failed_batch(error)
    if records is None:
        return None
    tp: TopicPartition = records.topic_partition
    offset = records.next_fetch_offset
    records.drain()
    consumer.pause(tp)
    return StoppedPartition(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        error=f"{type(error).__name__}: {error}",
        error_type=type(error).__name__,
        since=time.time(),
    )
