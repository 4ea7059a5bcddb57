"""A FAISS index addressed by string item ids, with labels for filtered search.

FAISS only knows int64 ids, so the mapping lives beside it. While small the
index is an `IndexIDMap2(IndexFlatL2)`, which supports both `remove_ids`
(upserts and tombstones) and `reconstruct` (queries that name an indexed item
instead of sending bytes). Past `ivf_threshold` items a compressed index with
the same abilities (pipeline/index/growth.py decides its kind and builds it) is
trained in a background thread from the stored vectors; upserts and deletes go
on against the current index meanwhile and are recorded, replayed onto the new
index, and the two are swapped under a lock held only for the last few changes.
"""

import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from pipeline.index import growth
from pipeline.index.refined import RefinedIVF
from pipeline.settings import DEFAULT_IVF_THRESHOLD

log = logging.getLogger(__name__)

# Changes recorded during a build that are replayed while holding the lock; larger
# backlogs are replayed outside it first, so writers never wait long.
SWAP_BACKLOG = 256

# Recorded change: (numeric ids, their vectors) adds them, (numeric ids, None) removes them.
Change = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class Hit:
    item_id: str
    label: str | None
    squared_l2: float


def _replay(index: faiss.Index | RefinedIVF, changes: Sequence[Change]) -> None:
    for numeric, vectors in changes:
        if vectors is None:
            index.remove_ids(numeric)
        else:
            index.add_with_ids(vectors, numeric)


class VectorIndex:
    def __init__(self, dim: int, ivf_threshold: int = DEFAULT_IVF_THRESHOLD) -> None:
        """`ivf_threshold` 0 keeps the index flat for good."""
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self._index: faiss.Index | RefinedIVF = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
        self._next_id = 0
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._labels: dict[str, str | None] = {}
        # Size at which the next compressed build starts; it grows after every build.
        self._build_at = ivf_threshold
        # Changes made while a build runs (None: no build running). The builder
        # thread and the swap touch `_index` and this list only under the lock.
        self._changes: list[Change] | None = None
        self._builder: threading.Thread | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._ids

    def item_ids(self) -> list[str]:
        return list(self._ids)

    def label(self, item_id: str) -> str | None:
        return self._labels[item_id]

    @property
    def kind(self) -> str:
        """ "flat", "ivf-sq8" (compressed, exact re-ranking) or "ivf" (from older snapshots)."""
        return growth.kind(self._index)

    def wait_for_growth(self, timeout_s: float | None = None) -> None:
        """Block until a running background build (if any) has been swapped in."""
        builder = self._builder
        if builder is not None:
            builder.join(timeout_s)

    def upsert(
        self, item_ids: Sequence[str], vectors: np.ndarray, labels: Sequence[str | None]
    ) -> None:
        """Replace any earlier vector of the same id, so a key never has two entries."""
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("duplicate ids in one upsert; keep only the newest per id")
        self.delete(item_ids)
        numeric = np.arange(self._next_id, self._next_id + len(item_ids), dtype=np.int64)
        self._next_id += len(item_ids)
        self._change(numeric, np.ascontiguousarray(vectors, dtype=np.float32))
        for item_id, num, label in zip(item_ids, numeric.tolist(), labels, strict=True):
            self._ids[item_id] = num
            self._names[num] = item_id
            self._labels[item_id] = _shared(label)
        self._grow_if_due()

    def delete(self, item_ids: Sequence[str]) -> int:
        numeric = [self._ids.pop(item_id) for item_id in item_ids if item_id in self._ids]
        for num in numeric:
            self._labels.pop(self._names.pop(num))
        if numeric:
            self._change(np.asarray(numeric, dtype=np.int64), None)
        return len(numeric)

    def _change(self, numeric: np.ndarray, vectors: np.ndarray | None) -> None:
        with self._lock:
            _replay(self._index, [(numeric, vectors)])
            if self._changes is not None:
                self._changes.append((numeric, vectors))

    def _grow_if_due(self) -> None:
        if not self.ivf_threshold or len(self) < self._build_at or self._changes is not None:
            return
        numeric = np.fromiter(self._ids.values(), dtype=np.int64, count=len(self._ids))
        with self._lock:
            vectors = self._index.reconstruct_batch(numeric)
            self._changes = []
        self._builder = threading.Thread(
            target=self._build, args=(numeric, vectors), name="index-build", daemon=True
        )
        self._builder.start()

    def _build(self, numeric: np.ndarray, vectors: np.ndarray) -> None:
        """Train and fill the new index, catch it up with the recorded changes, swap."""
        next_build_at = max(self._build_at, len(numeric)) * growth.REGROW_FACTOR
        try:
            built = growth.build_compressed(vectors, numeric)
            while True:
                with self._lock:
                    backlog, self._changes = self._changes or [], []
                    if len(backlog) <= SWAP_BACKLOG:
                        _replay(built, backlog)
                        self._index, self._changes = built, None
                        self._build_at = next_build_at
                        break
                _replay(built, backlog)
            log.info("index grew into %s: %d items, %d lists", self.kind, built.ntotal, built.nlist)
        except Exception:
            log.exception("index build failed; the index stays as it was")
            with self._lock:
                self._changes, self._build_at = None, next_build_at

    def vector(self, item_id: str) -> np.ndarray | None:
        num = self._ids.get(item_id)
        if num is None:
            return None
        with self._lock:
            return self._index.reconstruct(num)

    def search(self, queries: np.ndarray, k: int, label: str | None = None) -> list[list[Hit]]:
        """Nearest first; with `label`, only items of that label are candidates.

        A label filter searches its items exactly, whatever the index kind: an
        IVF search restricted to a few ids would visit only some of their lists.
        (A compressed index reconstructs them from its float16 copies.)
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if label is None:
            candidates = None
            k = min(k, len(self))
        else:
            candidates = np.asarray(
                [self._ids[i] for i, lab in self._labels.items() if lab == label], dtype=np.int64
            )
            k = min(k, len(candidates))
        if k == 0:
            return [[] for _ in range(len(queries))]
        with self._lock:
            if candidates is None:
                distances, numeric = self._index.search(queries, k)
            else:
                distances, positions = faiss.knn(
                    queries, self._index.reconstruct_batch(candidates), k
                )
                numeric = candidates[positions]
        return [
            [
                Hit(self._names[num], self._labels[self._names[num]], float(d2))
                for d2, num in zip(row_d, row_n, strict=True)
                if num >= 0
            ]
            for row_d, row_n in zip(distances, numeric, strict=True)
        ]

    def to_state(self) -> dict:
        """Everything needed to rebuild this index exactly, as plain data."""
        with self._lock:
            blob = growth.to_blob(self._index)
        return {
            "dim": self.dim,
            "ivf_threshold": self.ivf_threshold,
            "build_at": self._build_at,
            "next_id": self._next_id,
            "ids": self._ids,
            "labels": self._labels,
            "faiss": blob,
        }

    @classmethod
    def from_state(cls, state: dict) -> "VectorIndex":
        """A build that was running when the state was taken starts again on the next upsert."""
        index = cls(state["dim"], state.get("ivf_threshold", DEFAULT_IVF_THRESHOLD))
        index._build_at = state.get("build_at", index.ivf_threshold)
        index._index = growth.from_blob(state["faiss"])
        index._next_id = state["next_id"]
        index._ids = dict(state["ids"])
        index._names = {num: item_id for item_id, num in index._ids.items()}
        index._labels = {item_id: _shared(label) for item_id, label in state["labels"].items()}
        return index


def _shared(label: str | None) -> str | None:
    """One string object per distinct label: a person's many items repeat it, and a million
    separate copies cost tens of megabytes."""
    return None if label is None else sys.intern(label)
