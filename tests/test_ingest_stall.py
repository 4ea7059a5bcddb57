"""The stall guard on the real broker: a consumer that holds lagging partitions but fetches
nothing is noticed from the index's offsets and made to fetch from them again.

kafka-python's own stall (dpkp/kafka-python#3106, #3131) cannot be produced on purpose; a
paused partition is the same state seen from outside — held, lagging, never fetched — and the
recovery has to lift it too.
"""

import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.ingest.stall import LagCheck, fetch_from
from pipeline.kafka.clients import make_admin, make_consumer, make_producer
from pipeline.settings import Settings


@pytest.fixture
def two_partitions(kafka_settings: Settings) -> tuple[TopicPartition, TopicPartition]:
    """A topic of its own with five records in each of two partitions."""
    topic = f"test.stall.{uuid.uuid4().hex[:8]}"
    with make_admin(kafka_settings) as admin:
        admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    producer = make_producer(kafka_settings)
    try:
        for partition in (0, 1):
            for n in range(5):
                producer.send(
                    topic, key=f"{partition}/{n}".encode(), value=b"x", partition=partition
                )
        producer.flush(30)
    finally:
        producer.close()
    return TopicPartition(topic, 0), TopicPartition(topic, 1)


@pytest.fixture
def consumer(kafka_settings: Settings) -> Iterator[KafkaConsumer]:
    consumer = make_consumer(kafka_settings, group_id=None)
    try:
        yield consumer
    finally:
        consumer.close()


def test_a_record_produced_after_the_last_check_is_not_starvation(
    kafka_settings: Settings,
    consumer: KafkaConsumer,
    two_partitions: tuple[TopicPartition, TopicPartition],
):
    first, _ = two_partitions
    check = LagCheck()
    assert check.starved(consumer, {first: 5}) == []
    producer = make_producer(kafka_settings)
    try:
        producer.send(first.topic, key=b"late", value=b"x", partition=first.partition)
        producer.flush(30)
    finally:
        producer.close()
    assert check.starved(consumer, {first: 5}) == []
    assert check.starved(consumer, {first: 5}) == [first]


def _poll_for(consumer: KafkaConsumer, seconds: float) -> list[tuple[int, int]]:
    """(partition, offset) of every record the consumer hands out within `seconds`."""
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            seen += [(r.partition, r.offset) for r in records]
    return seen


def test_a_starved_partition_is_noticed_and_fetched_again_from_the_index(
    consumer: KafkaConsumer, two_partitions: tuple[TopicPartition, TopicPartition]
):
    first, second = two_partitions
    consumer.assign([first, second])
    consumer.seek(first, 0)
    consumer.seek(second, 0)
    consumer.pause(first, second)
    assert _poll_for(consumer, 2.0) == []

    # The index has applied partition 0 to its end and partition 1 up to offset 2: lag seen
    # at one check is starvation at the next, with nothing fetched between.
    applied = {first: 5, second: 2}
    check = LagCheck()
    assert check.starved(consumer, applied) == []
    assert check.starved(consumer, applied) == [second]
    assert check.starved(consumer, {first: 5, second: 5}) == []
    assert check.starved(consumer, {}) == []
    check.starved(consumer, applied)
    check.fetched()
    assert check.starved(consumer, applied) == []

    fetch_from(consumer, applied)

    seen = _poll_for(consumer, 5.0)
    assert sorted(seen) == [(1, 2), (1, 3), (1, 4)]
