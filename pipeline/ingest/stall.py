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


class LagCheck:
    """Which held partitions are starved: their log already ended past what their index has
    applied at the previous check, and polls have been empty since. Lag seen once is not
    enough — a record produced just after the last empty poll is lag that the next poll
    fetches."""

    def __init__(self) -> None:
        self._ends: dict[TopicPartition, int] = {}

    def starved(
        self, consumer: KafkaConsumer, applied: Mapping[TopicPartition, int]
    ) -> list[TopicPartition]:
        """Call after polls have been empty for a while; the log's ends are kept for the next
        call."""
        before, self._ends = self._ends, consumer.end_offsets(list(applied)) if applied else {}
        return [tp for tp, offset in applied.items() if before.get(tp, offset) > offset]

    def fetched(self) -> None:
        """Records came: what the ends said before is no longer lag left unfetched."""
        self._ends = {}


def fetch_from(consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
    """Fetch each partition from its offset on. A seek resets the client's position and the
    validation it may be waiting for; the resume lifts a pause, which the worker never sets
    but which would starve a partition just as silently."""
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)
    consumer.resume(*offsets)
