"""A consumer that holds a partition with lag and no longer fetches it, and how it is made to
fetch again.

kafka-python 3 has been seen to stop fetching a partition it holds (dpkp/kafka-python#3106: a
position awaiting leader-epoch validation is never fetched; #3131: records stop for some
partitions until the next rebalance). Nothing fails and polls just come back empty, so the
ingest actor asks only after its polls have been empty for a while, and compares the log's end
with what the index has applied: the index, not the consumer, says what is missing.
"""

from collections.abc import Mapping

from kafka import KafkaConsumer, TopicPartition


def lagging(consumer: KafkaConsumer, applied: Mapping[TopicPartition, int]) -> list[TopicPartition]:
    """The partitions whose log ends past the offset their index has applied up to."""
    if not applied:
        return []
    ends = consumer.end_offsets(list(applied))
    return [tp for tp, offset in applied.items() if ends[tp] > offset]


def fetch_from(consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
    """Fetch each partition from its offset on. A seek resets the client's position and the
    validation it may be waiting for; the resume lifts a pause, which the worker never sets
    but which would starve a partition just as silently."""
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)
    consumer.resume(*offsets)
