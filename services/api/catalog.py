"""Items and model versions as resources: what is indexed, and which models exist.

A DELETE removes the item from the index and from every replica's copy of it before it is
acknowledged (so no later query returns it)
and also writes its tombstone to Kafka, so the log — from which every index is
rebuilt — agrees with what the API acknowledged.
"""

import asyncio

from kafka import KafkaProducer

from pipeline.index.handles import Shards, every_replica
from pipeline.index.replica_reads import ReplicaReads
from pipeline.kafka.clients import make_producer
from pipeline.kafka.readback import fill_missing
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord, ModelRecord
from pipeline.store.retention import RetainedItems
from schemas.api import (
    ItemMetadata,
    ItemPage,
    ItemSummary,
    ModelInfo,
    ModelList,
    SourcePosition,
)
from schemas.items import ITEM_TOPICS, Modality
from services.api.problems import not_found


def _metadata(record: ItemRecord, model_version: str | None) -> ItemMetadata:
    return ItemMetadata(
        id=record.item_id,
        modality=record.modality,
        label=record.label,
        model_version=model_version,
        indexed_at=record.indexed_at,
        source=_source(record),
    )


def _source(record: ItemRecord) -> SourcePosition:
    return SourcePosition(
        topic=record.source_topic, partition=record.source_partition, offset=record.source_offset
    )


def _summary(record: ItemRecord) -> ItemSummary:
    return ItemSummary(
        id=record.item_id,
        modality=record.modality,
        label=record.label,
        content_type=record.content_type,
        indexed_at=record.indexed_at,
        source=_source(record),
    )


def model_info(record: ModelRecord) -> ModelInfo:
    return ModelInfo(
        version=record.version,
        modality=record.modality,
        active=record.active,
        threshold=record.threshold,
        energy=record.energy,
        metrics=record.metrics,
        created_at=record.created_at,
    )


class Catalog:
    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        holders: dict[Modality, Shards],
        reads: ReplicaReads,
    ) -> None:
        self._settings = settings
        self._store = store
        self._payloads = PayloadStore(settings.payloads_dir)
        self._retained = RetainedItems(store, self._payloads)
        self._holders = holders
        self._reads = reads
        self._producer: KafkaProducer | None = None

    async def item(self, modality: Modality, item_id: str) -> ItemMetadata:
        record = await asyncio.to_thread(self._store.get_item, modality, item_id)
        if record is None:
            raise not_found(f"no {modality.value} item with id {item_id!r}")
        # The version of the vector searched now, which a switch changes for every item at
        # once; none while the item is stored but not (yet) indexed.
        version, indexed = await asyncio.gather(
            self._reads.ask(modality, 0, lambda h: h.active_version.remote()),
            self._reads.ask_every_shard(modality, lambda h: h.contains.remote([item_id])),
        )
        return _metadata(record, version if any(found for [found] in indexed) else None)

    async def items(
        self, modality: Modality, label: str | None, offset: int, limit: int
    ) -> ItemPage:
        records, total = await asyncio.to_thread(
            self._store.list_items, modality, label=label, offset=offset, limit=limit
        )
        return ItemPage(
            items=[_summary(r) for r in records], total=total, offset=offset, limit=limit
        )

    def _bytes(self, record: ItemRecord) -> bytes | None:
        sha256 = record.payload_sha256
        if sha256 is None:
            return None
        if sha256 not in self._payloads:
            # This node's payload store is a cache of the compacted item topic.
            fill_missing(self._settings, self._payloads, [record])
        try:
            return self._payloads.get(sha256)
        except FileNotFoundError:
            return None

    async def payload(self, modality: Modality, item_id: str) -> tuple[bytes, str]:
        """The item's stored bytes and the content type it was produced with."""
        record = await asyncio.to_thread(self._store.get_item, modality, item_id)
        if record is None:
            raise not_found(f"no {modality.value} item with id {item_id!r}")
        data = await asyncio.to_thread(self._bytes, record)
        if data is None:
            raise not_found(f"the bytes of {modality.value} item {item_id!r} are not retained")
        return data, record.content_type

    def _tombstone(self, modality: Modality, item_id: str, partition: int | None) -> None:
        """Into the partition the item was read from (any producer's partitioner may have
        chosen it), so that its shard and the topic's compaction both see it; by key when
        the item was never stored."""
        if self._producer is None:
            self._producer = make_producer(self._settings)
        topic = ITEM_TOPICS[modality]
        self._producer.send(topic, key=item_id.encode(), value=None, partition=partition)
        self._producer.flush()

    async def delete(self, modality: Modality, item_id: str) -> None:
        record = await asyncio.to_thread(self._store.get_item, modality, item_id)
        # The shard holding it removes it; asking all spares finding which one that is. Every
        # replica must take it (one that is down fails the delete, 503, to be sent again).
        removed = sum(
            await asyncio.gather(
                *(
                    h.delete_everywhere.remote([item_id])
                    for h in every_replica(self._holders[modality])
                )
            )
        )
        stored = await asyncio.to_thread(self._retained.delete, modality, [item_id])
        if not removed and not stored:
            raise not_found(f"no {modality.value} item with id {item_id!r}")
        partition = None if record is None else record.source_partition
        await asyncio.to_thread(self._tombstone, modality, item_id, partition)

    async def models(self) -> ModelList:
        records = await asyncio.to_thread(self._store.list_models)
        return ModelList(
            models={m: [model_info(r) for r in records if r.modality is m] for m in Modality}
        )
