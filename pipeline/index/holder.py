"""The Ray actor that owns one modality's index: the single writer and the query target.

Ingest actors send it decoded-and-embedded batches together with the Kafka
offsets those batches end at; it applies both in one step, so the offsets it
reports always describe exactly what the index contains. Snapshots carry that
pair to disk, and a restarted stack resumes consuming from there.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.index.snapshot import Snapshot, read_latest_snapshot, write_snapshot
from pipeline.index.vector_index import Hit, VectorIndex


@dataclass
class IndexUpdate:
    """One ingest batch for one modality, already reduced to the last operation per id."""

    upsert_ids: list[str]
    vectors: np.ndarray
    labels: list[str | None]
    delete_ids: list[str]
    # partition -> next offset to consume once this update is applied
    offsets: dict[int, int] = field(default_factory=dict)


class IndexHolder:
    def __init__(
        self, index_dir: Path, model_version: str, dim: int, snapshot_interval_s: float = 30.0
    ) -> None:
        self._dir = index_dir
        self._interval = snapshot_interval_s
        snapshot = read_latest_snapshot(index_dir)
        if snapshot is not None and snapshot.model_version == model_version:
            self._index, self._offsets = snapshot.index, snapshot.offsets
        else:
            # A new model means every stored vector is stale: start empty and let
            # the consumers replay the (compacted) topic from the beginning.
            self._index, self._offsets = VectorIndex(dim), {}
        self._model_version = model_version
        # Upserts applied by this process: the ingest rate is its derivative.
        self._applied = 0
        self._dirty = False
        self._last_snapshot = time.monotonic()

    def model_version(self) -> str:
        return self._model_version

    def offsets(self) -> dict[int, int]:
        return dict(self._offsets)

    def size(self) -> int:
        return len(self._index)

    def stats(self) -> dict[str, int | dict[int, int]]:
        """One call for a metrics scrape: size, upserts applied, offsets reflected."""
        return {"size": len(self._index), "applied": self._applied, "offsets": self.offsets()}

    def contains(self, item_ids: list[str]) -> list[bool]:
        return [item_id in self._index for item_id in item_ids]

    def apply(self, update: IndexUpdate) -> int:
        self._index.delete(update.delete_ids)
        if update.upsert_ids:
            self._index.upsert(update.upsert_ids, update.vectors, update.labels)
        for partition, offset in update.offsets.items():
            self._offsets[partition] = max(offset, self._offsets.get(partition, 0))
        self._applied += len(update.upsert_ids)
        self._dirty = True
        if time.monotonic() - self._last_snapshot >= self._interval:
            self.snapshot()
        return len(self._index)

    def delete(self, item_ids: list[str]) -> int:
        """An API delete: gone from search at once; its tombstone follows through the log."""
        removed = self._index.delete(item_ids)
        self._dirty = self._dirty or bool(removed)
        return removed

    def search(self, queries: np.ndarray, k: int, label: str | None = None) -> list[list[Hit]]:
        return self._index.search(queries, k, label)

    def vector(self, item_id: str) -> tuple[np.ndarray, str | None] | None:
        vector = self._index.vector(item_id)
        return None if vector is None else (vector, self._index.label(item_id))

    def snapshot(self) -> Path | None:
        self._last_snapshot = time.monotonic()
        if not self._dirty:
            return None
        path = write_snapshot(
            self._dir, Snapshot(self._model_version, dict(self._offsets), self._index)
        )
        self._dirty = False
        return path
