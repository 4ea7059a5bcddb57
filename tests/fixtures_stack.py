"""Pytest plugin: the whole twinstream stack on real parts, with demo data streamed through it.

Models are trained with the quick preset on the data that will be indexed, the
held-out items (ORL shot 10, a few unseen words) are never produced, and tests
query with them over real HTTP. One stack per session: Ray + Serve cost ~15 s.
"""

import io
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image, PngImagePlugin

from pipeline.data.asterisk import common_words, iter_asterisk
from pipeline.data.items import DataItem
from pipeline.data.orl import iter_orl
from pipeline.kafka.clients import headers, make_producer
from pipeline.produce import produce_items
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.train.job import item_samples, train_and_register
from schemas.items import ITEM_TOPICS, Modality
from services.stack import Stack

TEST_HTTP_PORT = int(os.environ.get("TWINSTREAM_TEST_HTTP_PORT", "18000"))
HELD_OUT_SHOT = "10"
INDEXED_WORDS = 30
HELD_OUT_WORDS = 4
INGEST_TIMEOUT_S = 300
# Small enough that tests can cross it cheaply; every demo file is far below it.
MAX_ITEM_BYTES = 1_000_000


@dataclass(frozen=True)
class DemoData:
    indexed: dict[Modality, list[DataItem]]
    held_out: dict[Modality, list[DataItem]]


@pytest.fixture(scope="session")
def demo_data() -> DemoData:
    faces = list(iter_orl())
    words = common_words()
    speech_indexed = list(iter_asterisk(words=words[:INDEXED_WORDS]))
    speech_held_out = list(
        iter_asterisk(words=words[INDEXED_WORDS : INDEXED_WORDS + HELD_OUT_WORDS])
    )
    return DemoData(
        indexed={
            Modality.FACE: [f for f in faces if not f.id.endswith(f"/{HELD_OUT_SHOT}")],
            Modality.AUDIO: speech_indexed,
        },
        held_out={
            Modality.FACE: [f for f in faces if f.id.endswith(f"/{HELD_OUT_SHOT}")],
            Modality.AUDIO: speech_held_out,
        },
    )


@pytest.fixture(scope="session")
def stack_settings(kafka_settings: Settings) -> Settings:
    return Settings(
        state_dir=kafka_settings.state_dir,
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        http_port=TEST_HTTP_PORT,
        train_preset="quick",
        max_item_bytes=MAX_ITEM_BYTES,
    )


@pytest.fixture(scope="session")
def stack(stack_settings: Settings, demo_data: DemoData) -> Iterator[Stack]:
    store = MetadataStore.from_settings(stack_settings)
    for modality, items in demo_data.indexed.items():
        samples = item_samples(modality, items)
        train_and_register(stack_settings, store, modality, samples, activate=True)
    running = Stack(stack_settings)
    running.start()
    try:
        sent = {m: produce_items(stack_settings, items) for m, items in demo_data.indexed.items()}
        running.wait_indexed({m: [i.id for i in s] for m, s in sent.items()}, INGEST_TIMEOUT_S)
        yield running
    finally:
        running.stop()


def unique_png(image: bytes, tag: str) -> bytes:
    """The same picture as a PNG whose bytes (a text chunk) no other item shares."""
    info = PngImagePlugin.PngInfo()
    info.add_text("twinstream-test", tag)
    out = io.BytesIO()
    Image.open(io.BytesIO(image)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def index_unique_face(
    stack: Stack,
    settings: Settings,
    face: DataItem,
    prefix: str,
    partition: Callable[[str], int | None] = lambda _: None,
) -> tuple[str, bytes]:
    """Stream a copy of `face` no other item shares under a new id (into the partition
    `partition` picks for it, or the key's), and wait until it is searchable; returns the id
    and the bytes."""
    item_id = f"{prefix}/{uuid.uuid4().hex[:8]}"
    image = unique_png(face.read_bytes(), item_id)
    producer = make_producer(settings)
    producer.send(
        ITEM_TOPICS[Modality.FACE],
        key=item_id.encode(),
        value=image,
        headers=headers(modality="face", label=face.label),
        partition=partition(item_id),
    )
    producer.flush()
    producer.close()
    stack.wait_indexed({Modality.FACE: [item_id]}, timeout_s=60)
    return item_id, image


def delete_and_wait(
    stack: Stack, settings: Settings, ids: Mapping[Modality, Sequence[str]], timeout_s: float = 60
) -> None:
    """Tombstone the ids through Kafka, each into the partition it was read from (as the
    API's delete does), and wait until none of them is searchable."""
    store = MetadataStore.from_settings(settings)
    producer = make_producer(settings)
    for modality, item_ids in ids.items():
        for item_id in item_ids:
            record = store.get_item(modality, item_id)
            partition = None if record is None else record.source_partition
            producer.send(
                ITEM_TOPICS[modality], key=item_id.encode(), value=None, partition=partition
            )
    store.close()
    producer.flush()
    producer.close()
    deadline = time.monotonic() + timeout_s
    while any(len(stack.missing(m, i)) < len(i) for m, i in ids.items()):
        assert time.monotonic() < deadline, "tombstones were not applied"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        yield client
