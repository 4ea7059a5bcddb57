"""Payloads a node lacks come back from the item topics (pipeline/kafka/readback.py)."""

import contextlib

import pytest
from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from pipeline.data.orl import iter_orl
from pipeline.kafka.clients import make_admin, make_consumer, make_producer
from pipeline.kafka.ranges import read_ranges
from pipeline.kafka.readback import recorded_payloads
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord
from pipeline.train.job import stored_samples
from schemas.items import Modality
from services.api.problems import KAFKA_UNAVAILABLE, client_problem

# A topic of its own: a running test stack's ingest never sees these records.
TOPIC = "twinstream-test.readback"


@pytest.fixture
def topic(kafka_settings: Settings) -> str:
    with make_admin(kafka_settings) as admin, contextlib.suppress(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])
    return TOPIC


def _produce(settings: Settings, topic: str, records: list[tuple[str, bytes]]) -> list:
    producer = make_producer(settings)
    try:
        sent = [producer.send(topic, key=key.encode(), value=value) for key, value in records]
        return [future.get(timeout=30) for future in sent]
    finally:
        producer.close()


def _item(item_id: str, label: str, payload: bytes, where) -> ItemRecord:
    return ItemRecord(
        modality=Modality.FACE,
        item_id=item_id,
        label=label,
        payload_sha256=PayloadStore.address(payload),
        content_type="image/x-portable-graymap",
        source_topic=where.topic,
        source_partition=where.partition,
        source_offset=where.offset,
    )


def test_a_node_without_payloads_trains_on_bytes_read_back_from_the_topic(
    kafka_settings, topic, tmp_path
):
    faces = [f for f in iter_orl() if f.label == "s1"][:6]
    payloads = {f.id: f.read_bytes() for f in faces}
    newer = payloads[faces[0].id] + b"\n"
    positions = _produce(kafka_settings, topic, [*payloads.items(), (faces[0].id, newer)])
    items = [
        _item(f.id, f.label, payloads[f.id], p) for f, p in zip(faces, positions, strict=False)
    ]
    # An item whose recorded position holds other bytes than its own is not taken from there.
    stale = _item("orl/s3/1", "s3", b"not what is at that offset", positions[-1])
    node = Settings(
        state_dir=tmp_path / "node",
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        database_url=f"sqlite:///{tmp_path}/shared.db",
    )
    store = MetadataStore.from_settings(node)
    store.upsert_items([*items, stale])

    samples = stored_samples(node, store, Modality.FACE)

    assert [s.id for s in samples] == sorted(f.id for f in faces)
    local = PayloadStore(node.payloads_dir)
    assert all(local.get(item.payload_sha256) == payloads[item.item_id] for item in items)
    assert stale.payload_sha256 not in local
    # The newest record of an id is found at its own position too.
    assert recorded_payloads(node, [_item(faces[0].id, "s1", newer, positions[-1])]) == {
        PayloadStore.address(newer): newer
    }


def test_a_read_that_stops_receiving_is_a_kafka_timeout_the_caller_answers_503(
    kafka_settings, topic
):
    """A range past the partition's end never fills: the read gives up after the stall
    timeout with a Kafka timeout, which a route answers as 503, not a 500."""
    (where,) = _produce(kafka_settings, topic, [("stall", b"x")])
    consumer = make_consumer(kafka_settings, None)
    try:
        tp = TopicPartition(topic, where.partition)
        seen = []
        with pytest.raises(KafkaTimeoutError) as raised:
            for record in read_ranges(consumer, {tp: (where.offset, where.offset + 1000)}, 1.0):
                seen.append(record.offset)
        assert seen == [where.offset]
    finally:
        consumer.close()
    problem = client_problem(raised.value)
    assert problem is not None
    assert (problem.status, problem.detail) == (503, KAFKA_UNAVAILABLE)
