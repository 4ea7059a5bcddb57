"""The embedded broker, the topics and the client defaults, against a real broker."""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.data.orl import iter_orl
from pipeline.kafka.clients import (
    header_value,
    headers,
    make_admin,
    make_consumer,
    make_producer,
    message_limit_bytes,
)
from pipeline.kafka.launcher import EmbeddedKafka, KafkaLauncherError
from pipeline.kafka.topics import ensure_topics
from pipeline.settings import Settings
from schemas.items import DLQ_TOPIC, ITEM_TOPICS, PAIRS_TOPIC, Header, Modality
from tests.fixtures_kafka import subscribe_when_known


@pytest.fixture(scope="module")
def scratch_topic(kafka_settings: Settings) -> str:
    """A topic of this module's own, so its messages never reach the ingest tests."""
    topic = f"test.kafka-broker.{uuid.uuid4().hex[:8]}"
    limit = str(message_limit_bytes(kafka_settings))
    with make_admin(kafka_settings) as admin:
        admin.create_topics(
            {topic: {"num_partitions": 1, "configs": {"max.message.bytes": limit}}},
            wait_for_metadata=True,
        )
    return topic


@contextmanager
def fresh_group(settings: Settings, topic: str) -> Iterator[KafkaConsumer]:
    """A consumer in a new group, which therefore reads the topic from the start."""
    consumer = make_consumer(settings, group_id=f"test-{uuid.uuid4().hex[:8]}")
    subscribe_when_known(consumer, topic)
    try:
        yield consumer
    finally:
        consumer.close()


@pytest.fixture
def consumer(kafka_settings: Settings, scratch_topic: str) -> Iterator[KafkaConsumer]:
    with fresh_group(kafka_settings, scratch_topic) as consumer:
        yield consumer


def produce(settings: Settings, topic: str, key: bytes, value: bytes | None, **header_values):
    producer = make_producer(settings)
    try:
        producer.send(topic, key=key, value=value, headers=headers(**header_values)).get(30)
    finally:
        producer.close()


def consume_key(consumer: KafkaConsumer, key: bytes, timeout: float = 30) -> ConsumerRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                if record.key == key:
                    return record
    raise AssertionError(f"no message with key {key!r} arrived within {timeout} s")


def test_topics_exist_with_their_partition_counts(kafka_settings: Settings):
    ensure_topics(kafka_settings)  # a second call on existing topics changes nothing
    with make_admin(kafka_settings) as admin:
        described = {t["name"]: t for t in admin.describe_topics()}
    expected = {
        ITEM_TOPICS[Modality.FACE]: kafka_settings.topic_partitions,
        ITEM_TOPICS[Modality.AUDIO]: kafka_settings.topic_partitions,
        PAIRS_TOPIC: 1,
        DLQ_TOPIC: 1,
    }
    assert {name: len(described[name]["partitions"]) for name in expected} == expected


def test_message_with_key_value_and_headers_round_trips(
    kafka_settings: Settings, scratch_topic: str, consumer: KafkaConsumer
):
    key = f"orl/s7/{uuid.uuid4().hex[:6]}".encode()
    value = bytes(range(256)) * 4
    produce(
        kafka_settings, scratch_topic, key, value, modality="face", label="s7", produced_at=1234
    )

    record = consume_key(consumer, key)

    assert record.value == value
    assert header_value(record.headers, Header.MODALITY) == "face"
    assert header_value(record.headers, Header.LABEL) == "s7"
    assert header_value(record.headers, Header.PRODUCED_AT) == "1234"
    assert header_value(record.headers, Header.CONTENT_TYPE) is None


def test_tombstone_arrives_as_none(
    kafka_settings: Settings, scratch_topic: str, consumer: KafkaConsumer
):
    key = f"orl/s1/{uuid.uuid4().hex[:6]}".encode()
    produce(kafka_settings, scratch_topic, key, None, modality="face")

    assert consume_key(consumer, key).value is None


def test_item_above_the_item_limit_still_reaches_consumers(
    kafka_settings: Settings, scratch_topic: str, consumer: KafkaConsumer
):
    """Oversized items must reach the app so it can dead-letter them with a reason."""
    key = f"big/{uuid.uuid4().hex[:6]}".encode()
    value = b"\x89" * (kafka_settings.max_item_bytes + 1024 * 1024)
    produce(kafka_settings, scratch_topic, key, value, modality="face")

    assert consume_key(consumer, key).value == value


def test_a_producer_packs_many_faces_into_one_request(
    kafka_settings: Settings, scratch_topic: str, consumer: KafkaConsumer
):
    """At the client default a 10 KB face fills a record batch alone: one request per item."""
    faces = [item.read_bytes() for item in islice(iter_orl(), 100)]
    run = uuid.uuid4().hex[:6]
    producer = make_producer(kafka_settings, linger_ms=20)
    try:
        for i, face in enumerate(faces):
            producer.send(scratch_topic, key=f"pack/{run}/{i}".encode(), value=face)
        producer.flush()
        per_request = producer.metrics()["producer-metrics"]["records-per-request-avg"]
    finally:
        producer.close()

    assert per_request >= 10
    assert consume_key(consumer, f"pack/{run}/99".encode()).value == faces[99]


def test_headers_helpers_spell_hyphens_skip_none_and_reject_bad_utf8():
    built = headers(content_type="image/png", label=None, source_offset=7)
    assert built == [("content-type", b"image/png"), ("source-offset", b"7")]
    assert header_value([("label", b"a"), ("label", b"b")], "label") == "b"
    with pytest.raises(ValueError, match="label"):
        header_value([("label", b"\xff\xfe")], "label")


def test_stop_and_start_keep_topics_and_messages(kafka_settings: Settings, scratch_topic: str):
    broker = EmbeddedKafka(kafka_settings)
    key = f"keep/{uuid.uuid4().hex[:6]}".encode()
    produce(kafka_settings, scratch_topic, key, b"survives", label="x")
    running = broker.status()
    assert running.running
    assert running.pid is not None

    broker.stop()
    stopped = broker.status()
    assert (stopped.running, stopped.pid) == (False, None)
    broker.stop()  # stopping a stopped broker is a no-op
    broker.start()

    restarted = broker.status()
    assert restarted.running
    assert restarted.pid != running.pid
    assert restarted.data_dir == running.data_dir
    with fresh_group(kafka_settings, scratch_topic) as consumer:
        record = consume_key(consumer, key)
    assert (record.value, header_value(record.headers, "label")) == (b"survives", "x")
    with make_admin(kafka_settings) as admin:
        assert {*ITEM_TOPICS.values(), PAIRS_TOPIC, DLQ_TOPIC} <= set(admin.list_topics())


def test_start_on_a_running_broker_keeps_it(kafka_settings: Settings):
    broker = EmbeddedKafka(kafka_settings)
    pid = broker.status().pid

    broker.start()

    assert broker.status().pid == pid


def test_jars_are_fetched_once(kafka_settings: Settings):
    broker = EmbeddedKafka(kafka_settings)
    before = broker.jars_dir.stat().st_ino

    started = time.monotonic()
    broker.ensure_jars()

    assert time.monotonic() - started < 1
    assert broker.jars_dir.stat().st_ino == before
    assert any(broker.jars_dir.glob("kafka_2.13-*.jar"))


def test_missing_maven_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(KafkaLauncherError, match="mvn"):
        EmbeddedKafka(Settings(state_dir=tmp_path)).ensure_jars()


def test_a_port_taken_by_another_broker_is_refused(kafka_settings: Settings, tmp_path):
    other = Settings(state_dir=tmp_path, kafka_bootstrap=kafka_settings.kafka_bootstrap)

    with pytest.raises(KafkaLauncherError, match="already taken"):
        EmbeddedKafka(other).start()


def test_a_remote_bootstrap_is_never_launched(tmp_path):
    remote = Settings(state_dir=tmp_path, kafka_bootstrap="kafka.example.com:9092")

    with pytest.raises(KafkaLauncherError, match="loopback"):
        EmbeddedKafka(remote).start()
    assert not EmbeddedKafka(remote).status().running


def test_item_topics_are_compacted_changelogs(kafka_settings: Settings):
    with make_admin(kafka_settings) as admin:
        response = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in ITEM_TOPICS.values()]
        )
    configs = response["topic"]
    for topic in ITEM_TOPICS.values():
        assert configs[topic]["cleanup.policy"]["value"] == "compact", topic
