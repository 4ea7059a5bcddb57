"""Publishing items to their Kafka topic the way the contract says: key = id, labels in headers."""

import mimetypes
import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from pipeline.data.items import DataItem
from pipeline.kafka.clients import headers, make_producer
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS

# PGM is not in every mimetypes table, and the contract lists it.
CONTENT_TYPES = {".pgm": "image/x-portable-graymap", ".wav": "audio/wav"}


class Compression(StrEnum):
    """The codecs a Kafka record batch may be compressed with."""

    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


def content_type(item: DataItem) -> str:
    suffix = item.path.suffix.lower()
    return (
        CONTENT_TYPES.get(suffix)
        or mimetypes.guess_type(item.path.name)[0]
        or "application/octet-stream"
    )


def produce_items(
    settings: Settings,
    items: Iterable[DataItem],
    progress: Callable[[int], None] | None = None,
    compression: Compression = Compression.NONE,
) -> list[DataItem]:
    """Send every item and wait until the broker has acknowledged all of them."""
    codec = None if compression is Compression.NONE else compression.value
    producer = make_producer(settings, linger_ms=20, compression_type=codec)
    sent = []
    try:
        for item in items:
            producer.send(
                ITEM_TOPICS[item.modality],
                key=item.id.encode(),
                value=item.read_bytes(),
                headers=headers(
                    modality=item.modality.value,
                    label=item.label,
                    content_type=content_type(item),
                    produced_at=int(time.time() * 1000),
                ),
            )
            sent.append(item)
            if progress:
                progress(len(sent))
        producer.flush()
    finally:
        producer.close()
    return sent
