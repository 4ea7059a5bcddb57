"""One poll's worth of records -> index updates, metadata rows and rejections.

The records are applied as if one at a time, in log order: each is parsed and
decoded on its own (a bad one is rejected without touching the rest), then only
the last surviving operation per item id is kept, so an upsert followed by a
tombstone in the same batch deletes, and two versions of an item leave one entry.
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.decode.errors import DecodeError
from pipeline.decode.registry import decode
from pipeline.embed.model import EmbeddingModel
from pipeline.index.holder import IndexUpdate
from pipeline.ingest.message import ItemMessage, Rejected, parse_item
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord
from schemas.items import Modality, topic_modality


@dataclass
class BatchResult:
    updates: dict[Modality, IndexUpdate] = field(default_factory=dict)
    items: list[ItemRecord] = field(default_factory=list)
    deletes: dict[Modality, list[str]] = field(default_factory=dict)
    rejected: list[tuple[ConsumerRecord, str]] = field(default_factory=list)
    # Seconds of each encoder forward pass this batch needed (one per modality with upserts).
    embed_seconds: list[float] = field(default_factory=list)


def _next_offsets(records: Sequence[ConsumerRecord]) -> dict[Modality, dict[int, int]]:
    offsets: dict[Modality, dict[int, int]] = {}
    for record in records:
        per_topic = offsets.setdefault(topic_modality(record.topic), {})
        per_topic[record.partition] = max(per_topic.get(record.partition, 0), record.offset + 1)
    return offsets


def _item_record(message: ItemMessage, sha256: str, model_version: str) -> ItemRecord:
    produced_at = (
        None
        if message.produced_at_ms is None
        else datetime.fromtimestamp(message.produced_at_ms / 1000, UTC)
    )
    return ItemRecord(
        modality=message.modality,
        item_id=message.item_id,
        label=message.label,
        payload_sha256=sha256,
        content_type=message.content_type or "application/octet-stream",
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        produced_at=produced_at,
        model_version=model_version,
    )


def process_records(
    records: Sequence[ConsumerRecord],
    models: Mapping[Modality, EmbeddingModel],
    payloads: PayloadStore,
    max_item_bytes: int,
) -> BatchResult:
    """Records must be in log order within each partition (as a poll returns them)."""
    result = BatchResult()
    latest: dict[tuple[Modality, str], tuple[ItemMessage, np.ndarray | None]] = {}
    for record in records:
        try:
            message = parse_item(record, max_item_bytes)
            features = (
                None if message.payload is None else decode(message.modality, message.payload)
            )
        except (Rejected, DecodeError) as error:
            result.rejected.append((record, str(error)))
            continue
        latest[(message.modality, message.item_id)] = (message, features)

    for modality, offsets in _next_offsets(records).items():
        model = models[modality]
        upserts = [
            (message, features)
            for (mod, _), (message, features) in latest.items()
            if mod == modality and features is not None
        ]
        deletes = [
            item_id
            for (mod, item_id), (_, features) in latest.items()
            if mod == modality and features is None
        ]
        if upserts:
            started = time.perf_counter()
            vectors = model.embed(np.stack([features for _, features in upserts]))
            result.embed_seconds.append(time.perf_counter() - started)
        else:
            vectors = np.empty((0, model.embedding_dim), dtype=np.float32)
        result.updates[modality] = IndexUpdate(
            upsert_ids=[message.item_id for message, _ in upserts],
            vectors=vectors,
            labels=[message.label for message, _ in upserts],
            delete_ids=deletes,
            offsets=offsets,
        )
        result.deletes[modality] = deletes
        result.items.extend(
            _item_record(message, payloads.put(message.payload), model.version)
            for message, _ in upserts
            if message.payload is not None
        )
    return result
