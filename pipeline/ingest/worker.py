"""The ingest actor: a Kafka consumer-group member that feeds the index holders.

The source of truth for "what has been indexed" is the offsets each index holder
applied together with its vectors. On every partition assignment the consumer seeks
to those, so a restarted actor or stack resumes exactly where the index is; the
group's committed offsets (what lag is measured against) only ever advance to
what a durable checkpoint covers.

While the actor is behind the log, two batches are in flight: while one is embedded and
applied, the next is parsed, decoded and stored beside it (decoding, hashing and fsyncing
payloads wait on other things than the encoder); at the live tail a batch goes straight
through. Both sides are idempotent and the holder applies only the records past its
offsets, so a batch prepared and then dropped by a replay, or prepared for a partition
that a rebalance handed elsewhere, cannot double an item.
"""

import logging
import sys
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait

import ray
import torch
from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.index.handles import ModelCache, holder_handles
from pipeline.index.holder import ApplyResult
from pipeline.ingest.batch import BatchResult, ModalityBatch, process_records
from pipeline.ingest.dead_letter import dead_letter
from pipeline.ingest.stall import fetch_from, lagging
from pipeline.ingest.stats import IngestStats
from pipeline.kafka.clients import make_consumer, make_producer
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.retention import RetainedItems
from schemas.items import ITEM_TOPICS, Modality, topic_modality

log = logging.getLogger(__name__)

CONSUMER_GROUP = "twinstream-ingest"
POLL_TIMEOUT_MS = 200
RETRY_PAUSE_S = 1.0
# Empty polls for this long make the actor check that it is not stuck behind the log.
STALL_CHECK_S = 15.0


class _SeekToIndex(ConsumerRebalanceListener):
    def __init__(self, worker: "IngestWorker") -> None:
        self._worker = worker

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Nothing to flush: every applied batch already moved its holder's offsets."""

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._worker.seek_to_index(assigned)


class IngestWorker:
    def __init__(self, settings: Settings) -> None:
        torch.set_num_threads(settings.embed_threads)
        self._settings = settings
        self._holders = holder_handles()
        self._store = MetadataStore.from_settings(settings)
        self._retained = RetainedItems(self._store, PayloadStore(settings.payloads_dir))
        self._models = ModelCache(self._store)
        self._versions = dict(
            zip(
                self._holders,
                ray.get([h.versions.remote() for h in self._holders.values()]),
                strict=True,
            )
        )
        # Where the next poll continues each partition: a batch carries the positions it
        # was consumed from, and the holder checks them against its own offsets, so a
        # holder restored from an older checkpoint is noticed. Only the loop thread moves it.
        self._positions: dict[tuple[str, int], int] = {}
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-prepare")
        self._consumer = make_consumer(settings, CONSUMER_GROUP)
        self._producer = make_producer(settings)
        self._consumer.subscribe(
            [ITEM_TOPICS[m] for m in self._holders], listener=_SeekToIndex(self)
        )
        self._stop = threading.Event()
        self._stats = IngestStats()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def _index_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset each partition's index holder expects: what it has applied."""
        offsets = {m: ray.get(h.offsets.remote()) for m, h in self._holders.items()}
        return {tp: offsets[topic_modality(tp.topic)].get(tp.partition, 0) for tp in partitions}

    def seek_to_index(self, partitions: list[TopicPartition]) -> None:
        offsets = self._index_offsets(partitions)
        fetch_from(self._consumer, offsets)
        for tp, offset in offsets.items():
            self._positions[(tp.topic, tp.partition)] = offset

    def _run(self) -> None:
        rewind = False
        quiet_since = time.monotonic()
        # Batches polled and handed to the preparer, oldest first; at most two.
        prepared: deque[Future[BatchResult]] = deque()
        batch_size = self._settings.ingest_batch_size
        while not self._stop.is_set():
            try:
                if rewind:
                    wait(prepared)
                    prepared.clear()
                    self.seek_to_index(list(self._consumer.assignment()))
                    rewind = False
                polled = self._consumer.poll(
                    timeout_ms=0 if prepared else POLL_TIMEOUT_MS, max_records=batch_size
                )
                records = [r for batch in polled.values() for r in batch]
                if records:
                    prepared.append(self._prepare_next(records))
                # A full poll means a backlog: poll again at once to prepare beside this
                # batch. A partial one is the live tail, indexed at once for freshness.
                if len(prepared) == 2 or (prepared and len(records) < batch_size):
                    quiet_since = time.monotonic()
                    rewind = not self._index(prepared.popleft().result())
                elif not prepared and time.monotonic() - quiet_since > STALL_CHECK_S:
                    quiet_since = time.monotonic()
                    rewind = self._stalled()
            except Exception as error:
                # Whatever part of the batch did not reach a holder is replayed from
                # the offsets the holders report; the steps before that are idempotent.
                log.exception("ingest failed; replaying from the index's offsets")
                self._stats.retries += 1
                self._stats.last_error = f"{type(error).__name__}: {error}"
                rewind = True
                self._stop.wait(RETRY_PAUSE_S)

    def _prepare_next(self, records: list[ConsumerRecord]) -> Future[BatchResult]:
        """Hand `records` to the preparer with the positions they were consumed from, and
        move the positions past them for the poll after."""
        starts = dict(self._positions)
        for record in records:
            self._positions[(record.topic, record.partition)] = record.offset + 1
        return self._preparer.submit(self._prepare, records, starts)

    def _stalled(self) -> bool:
        """Polls came back empty although a held partition's log goes past what its index
        has applied (see `pipeline.ingest.stall`): true to fetch from the index again."""
        held = list(self._consumer.assignment())
        behind = lagging(self._consumer, self._index_offsets(held)) if held else []
        if behind:
            log.warning("no records for %.0f s while %s lag; seeking again", STALL_CHECK_S, behind)
            self._stats.stalls += 1
        return bool(behind)

    def _prepare(
        self, records: list[ConsumerRecord], starts: dict[tuple[str, int], int]
    ) -> BatchResult:
        """Dead letters, then metadata and payloads: each step may be repeated on replay."""
        result = process_records(records, starts, self._settings.max_item_bytes)
        for record, reason in result.rejected:
            dead_letter(self._producer, record, reason)
        self._producer.flush()
        self._retained.upsert(result.items, result.payloads)
        for modality, item_ids in result.deletes.items():
            self._retained.delete(modality, item_ids)
        return result

    def _index(self, result: BatchResult) -> bool:
        """The index last: it moves the offsets, so nothing is skipped if a step before it
        failed. False when a holder asks for a replay from its offsets."""
        durable: dict[TopicPartition, OffsetAndMetadata] = {}
        for modality, batch in result.batches.items():
            applied = self._apply(modality, batch)
            if applied is None:
                return False
            topic = ITEM_TOPICS[modality]
            for partition, offset in applied.durable_offsets.items():
                durable[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, "", -1)
        # Only what a checkpoint covers: a group offset never runs ahead of durable state.
        owned = self._consumer.assignment()
        committable = {tp: o for tp, o in durable.items() if tp in owned}
        if committable:
            self._consumer.commit(committable)
        self._stats.indexed += len(result.items)
        self._stats.deleted += sum(len(ids) for ids in result.deletes.values())
        self._stats.dead_lettered += len(result.rejected)
        self._stats.batches += 1
        self._stats.batch_size.observe(result.records)
        for batch in result.batches.values():
            for seconds in batch.embed_seconds:
                self._stats.embed_seconds.observe(seconds)
        return True

    def _apply(self, modality: Modality, batch: ModalityBatch) -> ApplyResult | None:
        """Embed for every version the holder wants (a build may start meanwhile: then embed
        again for the new one) and apply; None when the holder wants a replay."""
        while True:
            batch.embed_for(self._models.get(v) for v in self._versions[modality])
            result: ApplyResult = ray.get(self._holders[modality].apply.remote(batch.update))
            self._versions[modality] = result.versions
            if result.applied:
                return result
            if result.rewind:
                return None

    def state(self) -> str:
        """The partitions this actor's consumer holds and where its loop is right now: for
        whoever finds the actor stalled."""
        held = sorted(f"{tp.topic}:{tp.partition}" for tp in self._consumer.assignment())
        frame = sys._current_frames().get(self._thread.ident or -1)
        if frame is None or not self._thread.is_alive():
            return f"holds {held}; the loop is not running"
        return f"holds {held}; the loop is at\n" + "".join(traceback.format_stack(frame, limit=8))

    def counts(self) -> dict[str, int]:
        return self._stats.counts()

    def stats(self) -> IngestStats:
        return self._stats.snapshot()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._preparer.shutdown()
        self._consumer.close()
        self._producer.close()
