"""The ingest actor: a Kafka consumer-group member that feeds the index holders.

The source of truth for "what has been indexed" is the offsets each index holder
applied together with its vectors. On every partition assignment the consumer seeks
to those, so a restarted actor or stack resumes exactly where the index is; the
group's committed offsets (what lag is measured against) only ever advance to
what a durable checkpoint covers (pipeline/index/checkpoint.py).

Two threads make a two-stage pipeline. The consuming thread owns the Kafka consumer (which is
not thread-safe): it polls, then parses a batch, dead-letters what is rejected and retains the
rest (payloads, metadata rows), hands it over, and commits what the holders have made durable.
The applying thread embeds each batch and applies it to its holder. A batch is consumed while
the one before it is embedded, and at most one waits between them, so a burst stays in Kafka;
parsing beside embedding keeps the encoder busy
(docs/experiments/2026-11-27-consuming-beside-embedding.md).

A batch the consumer cannot read at all (a codec it lacks, a corrupt batch) stops only its
partition (see `pipeline.ingest.unreadable`): reported through the actor's stats until a restart
fetches it again from the holders' offsets.

Both stages are idempotent and the holder applies only a batch that starts at its offsets,
so a batch prepared and then dropped by a replay, or prepared for a partition that a
rebalance handed elsewhere, cannot double an item. A replay from the holders' offsets
(after a failure, a holder's refusal or a rebalance) runs while no batch is being applied,
and drops every batch handed over before it.
"""

import logging
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import ray
import torch
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.decode.errors import DecodeError
from pipeline.index.checkpoint import DurableOffsets, GroupCommit
from pipeline.index.handles import ModelCache, every_replica, holder_handles, ingest_name
from pipeline.index.holder import ApplyOutcome, ApplyResult
from pipeline.index.shard_map import ShardMap
from pipeline.index.shards import (
    applied_everywhere,
    merge_replicas,
    merge_results,
    merge_versions,
    split_update,
)
from pipeline.ingest.batch import ModalityBatch, ParsedPoll, parse_poll
from pipeline.ingest.dead_letter import dead_letter
from pipeline.ingest.membership import (
    LOST_AFTER_S,
    AssignmentNotes,
    MembershipWatch,
    leave_group,
)
from pipeline.ingest.stall import LagCheck, fetch_from
from pipeline.ingest.stats import IngestStats
from pipeline.ingest.unreadable import StoppedPartition, stop_unreadable
from pipeline.kafka.clients import make_consumer, make_producer
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.retention import RetainedItems
from schemas.items import ITEM_TOPICS, Modality, topic_modality

log = logging.getLogger(__name__)

CONSUMER_GROUP = "twinstream-ingest"
POLL_TIMEOUT_MS = 200
# How often a thread waiting on the other one looks up for a stop or a replay.
HANDOVER_WAIT_S = 0.2
# How often a quiet applying thread asks the holders whether a checkpoint is due.
QUIET_CHECKPOINT_S = 1.0
RETRY_PAUSE_S = 1.0
# Empty polls for this long make the actor check that it is not stuck behind the log.
STALL_CHECK_S = 15.0
# A stop gives the threads this long to finish what they are in (an embedding, a holder's
# apply), then leaves them to the process's exit rather than hang the caller.
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class _Handover:
    """A prepared batch, and the replay generation it was consumed in: a batch from before
    the latest seek is dropped, not applied."""

    poll: ParsedPoll
    generation: int


class IngestWorker:
    def __init__(self, settings: Settings, members: int = 1, number: int = 0) -> None:
        """`members`: how many ingest actors share the consumer group; `number`: this one's,
        from 0, which names its static membership of the group."""
        torch.set_num_threads(settings.embed_threads)
        self._settings = settings
        self._instance = ingest_name(number)
        self._holders = holder_handles(settings)
        self._shards = ShardMap(settings.index_shards)
        self._store = MetadataStore.from_settings(settings)
        self._retained = RetainedItems(self._store, PayloadStore(settings.payloads_dir))
        self._models = ModelCache(ModelArtifacts(self._store, settings.models_dir))
        self._versions = {
            modality: merge_versions(ray.get([h.versions.remote() for h in every_replica(shards)]))
            for modality, shards in self._holders.items()
        }
        # Where the next poll continues each partition: a batch carries the positions it
        # was consumed from, and the holder checks them against its own offsets, so a
        # holder restored from an older checkpoint is noticed. Only the consuming thread
        # moves it.
        self._positions: dict[tuple[str, int], int] = {}
        # Partitions whose batch could not be read: paused, never fetched again by this consumer.
        self._stopped: dict[TopicPartition, StoppedPartition] = {}
        self._handover: queue.Queue[_Handover] = queue.Queue(maxsize=1)
        # Held while a batch is embedded and applied and while the consumer seeks: a seek
        # reads the holders' offsets, which must not move under it.
        self._applying = threading.Lock()
        self._generation = 0
        self._replay = threading.Event()
        self._group_commit = GroupCommit()
        self._membership = MembershipWatch(members, settings.topic_partitions)
        self._lag = LagCheck()
        self._consumer, self._assignments = self._join()
        self._producer = make_producer(settings)
        self._stop = threading.Event()
        self._stats = IngestStats()
        self._threads = [
            threading.Thread(target=self._consume_loop, name="ingest-consume", daemon=True),
            threading.Thread(target=self._apply_loop, name="ingest-apply", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _join(self) -> tuple[KafkaConsumer, AssignmentNotes]:
        consumer = make_consumer(self._settings, CONSUMER_GROUP, group_instance_id=self._instance)
        notes = AssignmentNotes()
        consumer.subscribe([ITEM_TOPICS[m] for m in self._holders], listener=notes)
        return consumer, notes

    def _holders_applied(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset each partition's index shard expects: what all its replicas have
        applied (one that is ahead skips what it has)."""
        offsets = {
            m: [
                applied_everywhere(ray.get([r.offsets.remote() for r in replicas]))
                for replicas in shards
            ]
            for m, shards in self._holders.items()
        }
        return {
            tp: offsets[topic_modality(tp.topic)][self._shards.owner(tp.partition)].get(
                tp.partition, 0
            )
            for tp in partitions
        }

    def resume_from_holders(self, partitions: list[TopicPartition]) -> None:
        """Fetch `partitions` from what their holders have applied; batches handed over
        before this are dropped."""
        with self._applying:
            offsets = self._holders_applied(partitions)
            fetch_from(
                self._consumer, {tp: o for tp, o in offsets.items() if tp not in self._stopped}
            )
            for tp, offset in offsets.items():
                self._positions[(tp.topic, tp.partition)] = offset
            self._generation += 1

    def _failed(self, error: Exception) -> None:
        """Whatever part of a batch did not reach a holder is replayed from the offsets the
        holders report; the steps before that are idempotent."""
        log.exception("ingest failed; replaying from the holders' offsets")
        self._stats.retries += 1
        self._stats.last_error = f"{type(error).__name__}: {error}"
        self._replay.set()
        self._stop.wait(RETRY_PAUSE_S)

    # --- the consuming thread: poll, parse, dead-letter, retain, hand over, commit ----------

    def _consume_loop(self) -> None:
        quiet_since = time.monotonic()
        batch_size = self._settings.ingest_batch_size
        while not self._stop.is_set():
            try:
                if self._replay.is_set():
                    self._replay_from_holders()
                self._group_commit.commit(self._consumer)
                records = self._after_rebalance(self._poll(batch_size))
                if self._membership.lost(self._consumer.assignment()):
                    self._rejoin()
                elif records:
                    quiet_since = time.monotonic()
                    self._lag.fetched()
                    self._hand_over(self._prepare(records))
                elif time.monotonic() - quiet_since > STALL_CHECK_S:
                    quiet_since = time.monotonic()
                    if self._stalled():
                        self._replay.set()
            except Exception as error:
                self._failed(error)
        self._group_commit.commit(self._consumer)

    def _poll(self, batch_size: int) -> list[ConsumerRecord]:
        """The next records; a batch that cannot be read stops its partition instead."""
        try:
            polled = self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=batch_size)
        except Exception as error:
            stopped = stop_unreadable(self._consumer, error)
            if stopped is None:
                raise
            self._stop_partition(stopped)
            return []
        return [r for batch in polled.values() for r in batch]

    def _after_rebalance(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """Partitions just assigned are fetched from their shards' offsets, not from where the
        group committed: their records from this poll are dropped and fetched again."""
        assigned, revoked = self._assignments.take()
        self.forget_stopped(list(revoked))
        assigned &= self._consumer.assignment()
        if not assigned:
            return records
        self.resume_from_holders(list(assigned))
        return [r for r in records if TopicPartition(r.topic, r.partition) not in assigned]

    def _rejoin(self) -> None:
        """Join the group again with a new consumer, which takes the old one's place under the
        same instance id; every partition it is given resumes from its shard's offsets."""
        log.warning(
            "ingest consumer held no partition for %.0f s although the group has no more members "
            "than partitions; joining the group again",
            LOST_AFTER_S,
        )
        self._stats.rejoins += 1
        self._consumer.close()
        # The closed consumer's listener will not report them revoked: a stopped partition is
        # reported by whoever holds it next, as after any rebalance.
        self.forget_stopped(list(self._stopped))
        self._consumer, self._assignments = self._join()
        self._membership.rejoined()

    def _stop_partition(self, stopped: StoppedPartition) -> None:
        log.error(
            "stopped %s:%d at offset %d: its batch cannot be read (%s); the other partitions go "
            "on, and it resumes there after a restart once the cause is gone",
            stopped.topic,
            stopped.partition,
            stopped.offset,
            stopped.error,
        )
        self._stopped[TopicPartition(stopped.topic, stopped.partition)] = stopped
        self._stats.stopped = list(self._stopped.values())

    def forget_stopped(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._stopped.pop(tp, None)
        self._stats.stopped = list(self._stopped.values())

    def _replay_from_holders(self) -> None:
        """The seek's new generation drops whatever is still handed over."""
        self.resume_from_holders(list(self._consumer.assignment()))
        self._replay.clear()

    def _prepare(self, records: list[ConsumerRecord]) -> _Handover:
        """Every step before the holder, each of which may be repeated on replay."""
        starts = self._advance_positions(records)
        poll = self._parse(records, starts)
        self._dead_letter(poll)
        self._retain(poll)
        return _Handover(poll, self._generation)

    def _advance_positions(self, records: list[ConsumerRecord]) -> dict[tuple[str, int], int]:
        """Move the positions past `records` for the next poll; returns where they were
        consumed from."""
        starts = dict(self._positions)
        for record in records:
            self._positions[(record.topic, record.partition)] = record.offset + 1
        return starts

    def _parse(
        self, records: list[ConsumerRecord], starts: dict[tuple[str, int], int]
    ) -> ParsedPoll:
        """Decoded into every input the modality's current models take."""
        inputs = {
            modality: {self._models.get(v).config.input for v in versions}
            for modality, versions in self._versions.items()
        }
        return parse_poll(records, starts, self._settings.max_item_bytes, inputs)

    def _dead_letter(self, poll: ParsedPoll) -> None:
        for record, reason in poll.rejected:
            dead_letter(self._producer, record, reason)
        self._producer.flush()

    def _retain(self, poll: ParsedPoll) -> None:
        """Payloads and metadata rows, kept for queries by id and for retraining."""
        self._retained.upsert(poll.items, poll.payloads)
        for modality, item_ids in poll.deletes.items():
            self._retained.delete(modality, item_ids)

    def _hand_over(self, handover: _Handover) -> None:
        """Wait for the applying thread to take `handover`; give up on a stop or a replay,
        which would drop it anyway."""
        while not (self._stop.is_set() or self._replay.is_set()):
            try:
                self._handover.put(handover, timeout=HANDOVER_WAIT_S)
                return
            except queue.Full:
                self._group_commit.commit(self._consumer)

    def _stalled(self) -> bool:
        """Polls came back empty since the last check although a held partition's log went
        past what its index has applied by then (see `pipeline.ingest.stall`): true to fetch
        from the holders again."""
        held = [tp for tp in self._consumer.assignment() if tp not in self._stopped]
        behind = self._lag.starved(self._consumer, self._holders_applied(held) if held else {})
        if behind:
            log.warning(
                "no records for %.0f s while %s lag; seeking again", 2 * STALL_CHECK_S, behind
            )
            self._stats.stalls += 1
        return bool(behind)

    # --- the applying thread: embed, apply, stage the durable offsets for commit ------------

    def _apply_loop(self) -> None:
        quiet_checked = time.monotonic()
        while not self._stop.is_set():
            try:
                handover = self._handover.get(timeout=HANDOVER_WAIT_S)
            except queue.Empty:
                handover = None
            try:
                if handover is not None:
                    self._apply_if_current(handover)
                elif time.monotonic() - quiet_checked > QUIET_CHECKPOINT_S:
                    quiet_checked = time.monotonic()
                    self._checkpoint_while_quiet()
            except Exception as error:
                self._failed(error)

    def _checkpoint_while_quiet(self) -> None:
        """The last changes before a quiet spell become durable and committable within the
        holders' snapshot interval; a restart then has nothing of them to replay."""
        with self._applying:
            for modality, shards in self._holders.items():
                for replicas in shards:
                    durable = ray.get([r.make_durable_if_due.remote() for r in replicas])
                    everywhere = applied_everywhere([d.offsets for d in durable], missing=None)
                    self._group_commit.stage(ITEM_TOPICS[modality], DurableOffsets(everywhere))

    def _apply_if_current(self, handover: _Handover) -> None:
        with self._applying:
            stale = handover.generation != self._generation or self._replay.is_set()
            if not stale and not self._apply_poll(handover.poll):
                self._replay.set()

    def _apply_poll(self, poll: ParsedPoll) -> bool:
        """The holders last: they move the offsets, so nothing is skipped if a step before
        failed. False when a holder asks for a replay from its offsets."""
        for modality, batch in poll.batches.items():
            applied = self._embed_and_apply(modality, batch)
            if applied is None:
                return False
            self._group_commit.stage(ITEM_TOPICS[modality], applied.durable)
        self._stats.indexed += len(poll.items)
        self._stats.deleted += sum(len(ids) for ids in poll.deletes.values())
        self._stats.dead_lettered += len(poll.rejected)
        self._stats.batches += 1
        self._stats.batch_size.observe(poll.records)
        for batch in poll.batches.values():
            for seconds in batch.embed_seconds:
                self._stats.embed_seconds.observe(seconds)
        return True

    def _embed_and_apply(self, modality: Modality, batch: ModalityBatch) -> ApplyResult | None:
        """Embed for every version the shards want (a build may start meanwhile: then embed
        again for the new one) and apply each partition's part to every replica of the shard
        owning it, all at once; None when one wants a replay. A replica that is down (Ray
        restarts it) fails the batch, which is replayed once it is back."""
        while True:
            try:
                batch.embed_for(self._models.get(v) for v in self._versions[modality])
            except DecodeError as error:
                # A model added meanwhile takes an input this batch was not read for, and an
                # item cannot become it: read the batch again, rejecting that item for all.
                log.warning("re-reading a %s batch for a new model's input: %s", modality, error)
                return None
            shards = self._holders[modality]
            parts = split_update(batch.update, self._shards)
            sent = [[r.apply.remote(part) for r in shards[s]] for s, part in parts.items()]
            result = merge_results([merge_replicas(ray.get(refs)) for refs in sent])
            self._versions[modality] = result.versions
            match result.outcome:
                case ApplyOutcome.APPLIED:
                    return result
                case ApplyOutcome.REPLAY:
                    return None
                case ApplyOutcome.EMBED_AGAIN:
                    continue

    # --- for whoever watches the actor ------------------------------------------------------

    def state(self) -> str:
        """The partitions this actor's consumer holds and where each of its threads is right
        now: for whoever finds the actor stalled."""
        held = sorted(f"{tp.topic}:{tp.partition}" for tp in self._consumer.assignment())
        frames = sys._current_frames()
        lines = [f"holds {held}"]
        for thread in self._threads:
            frame = frames.get(thread.ident or -1)
            if frame is None or not thread.is_alive():
                lines.append(f"{thread.name} is not running")
            else:
                stack = "".join(traceback.format_stack(frame, limit=8))
                lines.append(f"{thread.name} is at\n{stack}")
        return "\n".join(lines)

    def counts(self) -> dict[str, int]:
        return self._stats.counts()

    def stats(self) -> IngestStats:
        snapshot = self._stats.snapshot()
        snapshot.held = sorted(f"{tp.topic}:{tp.partition}" for tp in self._consumer.assignment())
        return snapshot

    def stop(self) -> None:
        """Within STOP_TIMEOUT_S whatever the threads are doing; the clients are closed only when
        no thread can still be using them."""
        self._stop.set()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        if any(thread.is_alive() for thread in self._threads):
            log.warning("ingest threads did not stop in %.0f s: %s", STOP_TIMEOUT_S, self.state())
            return
        self._consumer.close()
        self._producer.close()
        leave_group(self._settings, CONSUMER_GROUP, self._instance)
