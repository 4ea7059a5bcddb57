"""Pytest plugin: one real embedded Kafka broker shared by the whole test session.

Starting a broker costs seconds, so every test that needs Kafka shares this one.
It runs on 19092/19093 rather than the default 9092/9093 so a developer's own
`twinstream up` keeps running while the suite does.
"""

import os
import time
from collections.abc import Iterator

import pytest
from kafka import ConsumerRebalanceListener, KafkaConsumer

from pipeline.kafka.clients import make_admin
from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.kafka.topics import ensure_topics
from pipeline.settings import Settings

# Overridable so two suites (two checkouts) can run side by side on one machine.
TEST_BOOTSTRAP = os.environ.get("TWINSTREAM_TEST_BOOTSTRAP", "127.0.0.1:19092")
TOPIC_KNOWN_TIMEOUT_S = 30


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a running broker that has twinstream's topics."""
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("twinstream-kafka"),
        kafka_bootstrap=TEST_BOOTSTRAP,
    )
    broker = EmbeddedKafka(settings)
    broker.start()
    try:
        ensure_topics(settings)
        yield settings
    finally:
        broker.stop()


def subscribe_when_known(
    consumer: KafkaConsumer, topic: str, listener: ConsumerRebalanceListener | None = None
) -> None:
    """Subscribe once the consumer's own metadata lists the topic's partitions: a group leader
    that does not know a topic made just before assigns it to nobody, and kafka-python may not
    ask again for minutes."""
    deadline = time.monotonic() + TOPIC_KNOWN_TIMEOUT_S
    while not consumer.partitions_for_topic(topic):
        assert time.monotonic() < deadline, f"the consumer never learned of {topic}"
        time.sleep(0.1)
    consumer.subscribe([topic], listener=listener)


def group_members(settings: Settings, group: str) -> list[tuple[str | None, list[int]]]:
    """Each member's instance id and partitions, as the broker describes the consumer group."""
    with make_admin(settings) as admin:
        described = admin.describe_groups([group])[group]
    return [
        (
            m["group_instance_id"],
            sorted(
                p for a in m["member_assignment"]["assigned_partitions"] for p in a["partitions"]
            ),
        )
        for m in described["members"]
    ]
