"""Pytest plugin: one real embedded Kafka broker shared by the whole test session.

Starting a broker costs seconds, so every test that needs Kafka shares this one.
It runs on 19092/19093 rather than the default 9092/9093 so a developer's own
`twinstream up` keeps running while the suite does.
"""

import os
from collections.abc import Iterator

import pytest

from pipeline.kafka.clients import make_admin
from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.kafka.topics import ensure_topics
from pipeline.settings import Settings

# Overridable so two suites (two checkouts) can run side by side on one machine.
TEST_BOOTSTRAP = os.environ.get("TWINSTREAM_TEST_BOOTSTRAP", "127.0.0.1:19092")


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
