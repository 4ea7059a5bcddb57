"""The checkpoint protocol that keeps the index exactly-once with respect to the Kafka log.

Its order, in one place:

1. `Checkpoint.record`: the holder applied a batch, and its index now reflects the log up to
   these offsets. They only move forward; anything else is a bug and is refused.
2. `Checkpoint.make_durable`, when `due`: the index and exactly those offsets are written as
   one snapshot (pipeline/index/snapshot.py); what it covers becomes `durable`.
3. `GroupCommit.commit`: an ingest actor commits to the consumer group only `DurableOffsets`,
   which step 2 alone makes, so a group offset never runs ahead of a snapshot.

Steps 1 and 2 run in the index holder: it is the single writer, so it decides when for every
ingest actor at once. Step 3 runs in each ingest actor, whose consumer nothing else may touch;
the durable offsets reach it with each apply. A restart resumes from the snapshot's offsets,
not the group's, which only measure lag (docs/architecture.md#exactly-once-with-respect-to-the-log).
"""

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from pipeline.index.snapshot import Snapshot, write_snapshot
from pipeline.index.vector_index import VectorIndex


class OffsetsWentBackwards(ValueError):
    """An applied offset lower than one already recorded for its partition."""


@dataclass(frozen=True)
class DurableOffsets:
    """partition -> the next offset to consume, as covered by the newest snapshot on disk."""

    offsets: Mapping[int, int]


class Checkpoint:
    """Steps 1 and 2 for one index: what it has applied, and what of that is on disk."""

    def __init__(
        self,
        directory: Path,
        interval_s: float,
        every_operations: int,
        restored: Mapping[int, int],
        capture: Callable[[], tuple[str, VectorIndex]],
    ) -> None:
        """`restored`: the offsets of the snapshot the index was read from (already durable);
        `capture`: the model version and index a snapshot writes at the moment it is taken."""
        self._directory = directory
        self._interval_s = interval_s
        self._every = every_operations
        self._capture = capture
        self._applied = dict(restored)
        self._durable = DurableOffsets(dict(restored))
        # Operations applied since the last snapshot, API deletes and switches included.
        self._pending = 0
        self._written_at = time.monotonic()
        # For the checkpoint metrics: when everything was last durable, and the last write's
        # duration.
        self._durable_since = time.time()
        self._write_s = 0.0

    def applied(self) -> dict[int, int]:
        """partition -> the next offset the index expects: where a consumer resumes."""
        return dict(self._applied)

    def durable(self) -> DurableOffsets:
        return self._durable

    def record(self, offsets: Mapping[int, int], operations: int) -> None:
        """Step 1, then step 2 if it is due. `offsets` are the partitions the index moved past;
        `operations` counts its changes (a change outside the log, such as an API delete,
        records no offsets)."""
        behind = {p: o for p, o in offsets.items() if o < self._applied.get(p, 0)}
        if behind:
            raise OffsetsWentBackwards(f"offsets {behind} are behind the applied {self._applied}")
        self._applied.update(offsets)
        self._pending += operations
        if self.due():
            self.make_durable()

    def due(self) -> bool:
        return bool(self._pending) and (
            self._pending >= self._every or time.monotonic() - self._written_at >= self._interval_s
        )

    def make_durable(self) -> Path | None:
        """Step 2: write the index with the offsets it reflects; None when nothing changed
        since the last snapshot."""
        if not self._pending:
            return None
        started = time.monotonic()
        version, index = self._capture()
        path = write_snapshot(self._directory, Snapshot(version, dict(self._applied), index))
        self._written_at = time.monotonic()
        self._write_s = self._written_at - started
        self._durable_since = time.time()
        self._durable = DurableOffsets(dict(self._applied))
        self._pending = 0
        return path

    def stats(self) -> dict[str, float]:
        return {
            # 0 while nothing waits for a snapshot.
            "checkpoint_age_s": time.time() - self._durable_since if self._pending else 0.0,
            "checkpoint_s": self._write_s,
        }


class GroupCommit:
    """Step 3 in an ingest actor: the thread that applies batches stages what the holders made
    durable, and the thread that owns the consumer commits it."""

    def __init__(self) -> None:
        self._staged: dict[TopicPartition, OffsetAndMetadata] = {}
        self._lock = threading.Lock()

    def stage(self, topic: str, durable: DurableOffsets) -> None:
        with self._lock:
            for partition, offset in durable.offsets.items():
                self._staged[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, "", -1)

    def commit(self, consumer: KafkaConsumer) -> None:
        """Commit what is staged for the partitions `consumer` still holds; another member
        commits the rest."""
        with self._lock:
            staged, self._staged = self._staged, {}
        held = consumer.assignment()
        committable = {tp: o for tp, o in staged.items() if tp in held}
        if committable:
            consumer.commit(committable)
