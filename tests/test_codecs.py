"""Every compression codec Kafka has, produced by the clients other than the one ingest reads
with that most producers use: librdkafka (the `confluent-kafka` package) and the Java client
(from the broker's own jars).

Each batch is looked up in the broker's log to prove it went in with the codec under test, and
the zstd one bigger than 1 MiB without its size in the frame, the case a decoder that guesses
an output size gets wrong.
"""

import json
import struct
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zstandard
from confluent_kafka import Producer
from kafka import TopicPartition

from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.retrain.feedback import read_pairs
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, PAIRS_TOPIC, Modality
from tests.fixtures_stack import delete_and_wait
from tests.log_segments import StoredBatch, stored_batch

# Kafka's codec ids, as the record batch attributes carry them.
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ITEMS_PER_CODEC = 6
PARTITION = 1
INDEX_TIMEOUT_S = 180
# Over 1 MiB of faces (about 10 KB each) in one batch.
BIG_BATCH_ITEMS = 120
BIG_BATCH_BYTES = 1024 * 1024


JAVA_PRODUCER = Path(__file__).parent / "java" / "CodecProducer.java"
JAVA_TIMEOUT_S = 120
Messages = list[tuple[bytes | None, bytes]]


def _partition(topic: str) -> int:
    return 0 if topic == PAIRS_TOPIC else PARTITION


def _librdkafka(
    settings: Settings, codec: str, topic: str, messages: Messages
) -> list[tuple[int, int]]:
    """Sends in as few batches as librdkafka makes; (partition, offset) of each."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "compression.type": codec,
            "enable.idempotence": True,
            "linger.ms": 1000,
            "batch.size": 8 * 1024 * 1024,
            "message.max.bytes": 16 * 1024 * 1024,
        }
    )
    delivered: list[tuple[int, int]] = []

    def on_delivery(error, message) -> None:
        assert error is None, error
        delivered.append((message.partition(), message.offset()))

    for key, value in messages:
        producer.produce(
            topic,
            key=key,
            value=value,
            partition=_partition(topic),
            headers=[("modality", b"face"), ("label", b"s1")],
            on_delivery=on_delivery,
        )
    assert producer.flush(60) == 0
    return delivered


def _java(settings: Settings, codec: str, topic: str, messages: Messages) -> list[tuple[int, int]]:
    """Sends through the Java client, run as a single-file program on the broker's jars."""
    framed = b"".join(
        (struct.pack(">i", -1) if key is None else struct.pack(">i", len(key)) + key)
        + struct.pack(">i", len(value))
        + value
        for key, value in messages
    )
    classpath = f"{EmbeddedKafka(settings).jars_dir}/*"
    target = [settings.kafka_bootstrap, topic, str(_partition(topic)), codec]
    done = subprocess.run(
        ["java", "-cp", classpath, str(JAVA_PRODUCER), *target],
        input=framed,
        capture_output=True,
        timeout=JAVA_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return [tuple(map(int, line.split())) for line in done.stdout.decode().splitlines()]


CLIENTS: dict[str, Callable[[Settings, str, str, Messages], list[tuple[int, int]]]] = {
    "librdkafka": _librdkafka,
    "java": _java,
}


def _batch(settings: Settings, topic: str, partition: int, offset: int) -> StoredBatch:
    return stored_batch(EmbeddedKafka(settings).data_dir, TopicPartition(topic, partition), offset)


def _faces(demo_data, ids: list[str]) -> list[tuple[bytes | None, bytes]]:
    faces = demo_data.held_out[Modality.FACE]
    return [(i.encode(), faces[n % len(faces)].read_bytes()) for n, i in enumerate(ids)]


@contextmanager
def _indexed_once(stack, stack_settings, ids: list[str]) -> Iterator[None]:
    """The ids produced inside the block are indexed, one entry each, then deleted again.

    The size is read before anything is produced (ingest may index the items before the block
    ends), and the deletes run even when an assertion fails: these are copies of held-out
    faces, which later tests search for.
    """
    size_before = stack.index_size(Modality.FACE)
    try:
        yield
        stack.wait_indexed({Modality.FACE: ids}, INDEX_TIMEOUT_S)
        assert stack.index_size(Modality.FACE) == size_before + len(ids)
    finally:
        delete_and_wait(stack, stack_settings, {Modality.FACE: ids})
    assert stack.index_size(Modality.FACE) == size_before


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("codec", list(CODECS))
def test_items_in_every_codec_are_indexed_once(stack, stack_settings, demo_data, codec, client):
    topic = ITEM_TOPICS[Modality.FACE]
    ids = [f"codec-{client}-{codec}/{uuid.uuid4().hex[:8]}/{n}" for n in range(ITEMS_PER_CODEC)]
    with _indexed_once(stack, stack_settings, ids):
        delivered = CLIENTS[client](stack_settings, codec, topic, _faces(demo_data, ids))
        assert {p for p, _ in delivered} == {PARTITION}
        for partition, offset in delivered:
            assert _batch(stack_settings, topic, partition, offset).codec == CODECS[codec]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_zstd_batch_over_1_mib_without_its_size_is_indexed_once(
    stack, stack_settings, demo_data, client
):
    topic = ITEM_TOPICS[Modality.FACE]
    ids = [f"codec-{client}-zstd-big/{uuid.uuid4().hex[:8]}/{n}" for n in range(BIG_BATCH_ITEMS)]
    with _indexed_once(stack, stack_settings, ids):
        delivered = CLIENTS[client](stack_settings, "zstd", topic, _faces(demo_data, ids))
        first = _batch(stack_settings, topic, PARTITION, delivered[0][1])
        assert first.codec == CODECS["zstd"]
        assert (
            zstandard.get_frame_parameters(first.records).content_size
            == zstandard.CONTENTSIZE_UNKNOWN
        )
        with zstandard.ZstdDecompressor().stream_reader(first.records) as reader:
            assert len(reader.read()) > BIG_BATCH_BYTES


@pytest.mark.parametrize("client", list(CLIENTS))
def test_pairs_in_every_codec_are_read(kafka_settings, client):
    run = uuid.uuid4().hex[:8]
    sent = {}
    # Audio pairs: the face retraining test counts the face pairs on the shared topic exactly.
    for codec in CODECS:
        pair = {"modality": "audio", "a": f"{run}/{codec}/a", "b": f"{run}/{codec}/b", "same": True}
        sent[codec] = (pair["a"], pair["b"])
        CLIENTS[client](kafka_settings, codec, PAIRS_TOPIC, [(None, json.dumps(pair).encode())])
    pairs, _ = read_pairs(kafka_settings, Modality.AUDIO)
    read = {(p.a, p.b) for p in pairs if p.a.startswith(run)}
    assert read == set(sent.values())
