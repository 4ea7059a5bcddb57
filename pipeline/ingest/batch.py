"""One poll's worth of records -> index updates, metadata rows and rejections.

The records are applied as if one at a time, in log order: each is parsed and
decoded on its own (a bad one is rejected without touching the rest), then only
the last surviving operation per item id is kept, so an upsert followed by a
tombstone in the same batch deletes, and two versions of an item leave one entry.
An item is decoded into every input the modality's current models take (during a
switch the new model may take another one), and rejected if any of them fails.
"""

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.decode.errors import DecodeError
from pipeline.embed.model import EmbeddingModel
from pipeline.index.holder import IndexUpdate
from pipeline.ingest.message import ItemMessage, Rejected, parse_item
from pipeline.inputs import INPUTS, decode
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord
from schemas.items import ITEM_TOPICS, Modality, topic_modality


@dataclass
class ModalityBatch:
    """One modality's share of a poll: the index update, the payloads behind its upserts and
    their decoded inputs by input name, kept so the update can be embedded for each model
    version the holder wants."""

    update: IndexUpdate
    payloads: list[bytes]
    features: dict[str, np.ndarray]
    # Seconds of each encoder forward pass run for this batch (the embed-latency metric).
    embed_seconds: list[float] = field(default_factory=list)

    def inputs(self, input_name: str) -> np.ndarray:
        """The upserts decoded as `input_name`: decoded now if a model that takes it was
        added after the batch was read (DecodeError then means the batch must be read again,
        so the item is rejected for every model alike)."""
        if input_name not in self.features:
            shape = (0, *INPUTS[input_name].shape)
            decoded = [decode(input_name, payload) for payload in self.payloads]
            self.features[input_name] = (
                np.stack(decoded) if decoded else np.empty(shape, np.float32)
            )
        return self.features[input_name]

    def embed_for(self, models: Iterable[EmbeddingModel]) -> None:
        for model in models:
            if model.version in self.update.vectors:
                continue
            features = self.inputs(model.config.input)
            if len(features):
                started = time.perf_counter()
                self.update.vectors[model.version] = model.embed(features)
                self.embed_seconds.append(time.perf_counter() - started)
            else:
                self.update.vectors[model.version] = np.empty(
                    (0, model.embedding_dim), dtype=np.float32
                )


@dataclass
class ParsedPoll:
    """What the consuming thread hands the applying thread, and what it retains first."""

    batches: dict[Modality, ModalityBatch] = field(default_factory=dict)
    items: list[ItemRecord] = field(default_factory=list)
    # sha256 -> bytes of every item in `items`, stored with them (pipeline/store/retention.py).
    payloads: dict[str, bytes] = field(default_factory=dict)
    deletes: dict[Modality, list[str]] = field(default_factory=dict)
    rejected: list[tuple[ConsumerRecord, str]] = field(default_factory=list)
    # Records the poll returned, rejected ones included (the batch-size metric).
    records: int = 0


def _item_record(message: ItemMessage, sha256: str) -> ItemRecord:
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
    )


def parse_poll(
    records: Sequence[ConsumerRecord],
    positions: Mapping[tuple[str, int], int],
    max_item_bytes: int,
    inputs: Mapping[Modality, Collection[str]],
) -> ParsedPoll:
    """Records must be in log order within each partition (as a poll returns them);
    `positions` are the offsets each (topic, partition) was consumed from for this batch;
    `inputs` the input names each modality's current models take. Vectors are left to
    `ModalityBatch.embed_for`."""
    poll = ParsedPoll(records=len(records))
    latest: dict[tuple[Modality, str], tuple[ItemMessage, dict[str, np.ndarray] | None]] = {}
    for record in records:
        try:
            message = parse_item(record, max_item_bytes)
            payload = message.payload
            features = (
                None
                if payload is None
                else {name: decode(name, payload) for name in inputs[message.modality]}
            )
        except (Rejected, DecodeError) as error:
            poll.rejected.append((record, str(error)))
            continue
        latest[(message.modality, message.item_id)] = (message, features)

    for modality in {topic_modality(r.topic) for r in records}:
        topic = ITEM_TOPICS[modality]
        ops = [op for (mod, _), op in latest.items() if mod == modality]
        upserts = [(m, f) for m, f in ops if f is not None]
        deletes = [m for m, f in ops if f is None]
        ends: dict[int, int] = {}
        for record in records:
            if record.topic == topic:
                ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
        update = IndexUpdate(
            upsert_ids=[m.item_id for m, _ in upserts],
            vectors={},
            labels=[m.label for m, _ in upserts],
            upsert_positions=[(m.partition, m.offset) for m, _ in upserts],
            delete_ids=[m.item_id for m in deletes],
            delete_positions=[(m.partition, m.offset) for m in deletes],
            start_offsets={p: positions[(topic, p)] for p in ends},
            offsets=ends,
        )
        features = {
            name: np.stack([f[name] for _, f in upserts]) for name in inputs[modality] if upserts
        }
        payloads = [m.payload for m, _ in upserts if m.payload is not None]
        poll.batches[modality] = ModalityBatch(update, payloads, features)
        poll.deletes[modality] = update.delete_ids
        for message, _ in upserts:
            if message.payload is not None:
                sha256 = PayloadStore.address(message.payload)
                poll.payloads[sha256] = message.payload
                poll.items.append(_item_record(message, sha256))
    return poll
