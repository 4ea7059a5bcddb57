"""A FAISS index addressed by string item ids, with labels for filtered search.

FAISS only knows int64 ids: each item's is a hash of its id (pipeline/index/item_names.py),
and ids and labels live beside the index in `ItemNames`, on disk. While small the index is
an `IndexIDMap2(IndexFlatL2)`, which supports `remove_ids` (upserts and tombstones) and
`reconstruct` (queries that name an indexed item instead of sending bytes). Past
`ivf_threshold` items a compressed index with the same abilities (pipeline/index/growth.py
decides its kind and builds it) is trained in a background thread from the stored vectors;
upserts and deletes go on against the current index meanwhile and are recorded, replayed
onto the new index, and the two are swapped under a lock held only for the last few changes.
"""

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from pipeline.index import growth, heap
from pipeline.index.item_names import ItemNames, item_keys
from pipeline.settings import DEFAULT_IVF_THRESHOLD

log = logging.getLogger(__name__)

# Items changed during a build that are replayed while holding the lock; larger backlogs are
# replayed outside it first, so writers never wait long, and fall within the lists' headroom.
SWAP_BACKLOG = 256
# What `to_state` writes; a state of another format is refused (its holder replays the topic).
STATE_FORMAT = 2

# Recorded change: (keys, their vectors) adds them, (keys, None) removes them.
Change = tuple[np.ndarray, np.ndarray | None]


class StateFormatError(ValueError):
    """A state written by a version of the index that keyed items differently."""


@dataclass(frozen=True)
class Hit:
    item_id: str
    label: str | None
    squared_l2: float


def _replay(index: faiss.Index, changes: Sequence[Change]) -> None:
    for keys, vectors in changes:
        if vectors is None:
            index.remove_ids(keys)
        else:
            index.add_with_ids(vectors, keys)


class VectorIndex:
    def __init__(self, dim: int, ivf_threshold: int = DEFAULT_IVF_THRESHOLD) -> None:
        """`ivf_threshold` 0 keeps the index flat for good."""
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self._index: faiss.Index = growth.flat(dim)
        # Who trains a compressed build: in this process unless its owner says otherwise.
        self.trainer: growth.Trainer = growth.train
        self._names = ItemNames()
        # Size at which the next compressed build starts; it grows after every build.
        self._build_at = ivf_threshold
        # Size of a compressed index when its lists were last refitted.
        self._fitted_at = 0
        # Changes made while a build runs (None: no build running). The builder
        # thread and the swap touch `_index` and this list only under the lock.
        self._changes: list[Change] | None = None
        self._builder: threading.Thread | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Entries in the FAISS index: an item applied twice would count twice."""
        return self._index.ntotal

    def __contains__(self, item_id: str) -> bool:
        return self._entry(item_id) is not None

    def item_ids(self) -> list[str]:
        return [item_id for item_id, _ in self._names.items()]

    def label(self, item_id: str) -> str | None:
        """KeyError if the item is not indexed."""
        entry = self._entry(item_id)
        if entry is None:
            raise KeyError(item_id)
        return entry[1]

    @property
    def kind(self) -> str:
        """ "flat", or "ivf-sq6" (compressed; "ivf-sq8" when loaded from a snapshot of an index
        built with 8-bit codes)."""
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
        keys = item_keys(item_ids)
        stored = self._names.put(keys, item_ids, labels)
        if stored.replaced.any():
            self._change(keys[stored.replaced], None)
        fresh = ~stored.refused
        self._change(keys[fresh], np.ascontiguousarray(vectors, dtype=np.float32)[fresh])
        self._grow_if_due()
        self._fit_if_due()

    def delete(self, item_ids: Sequence[str]) -> int:
        keys = item_keys(item_ids)
        held = self._names.held_by(keys)
        gone = np.unique(keys[[was == i for was, i in zip(held, item_ids, strict=True)]])
        if len(gone):
            self._names.remove(gone)
            self._change(gone, None)
        return len(gone)

    def _entry(self, item_id: str) -> tuple[int, str | None] | None:
        """(key, label) of an indexed item, None if it is not indexed."""
        key = int(item_keys([item_id])[0])
        found = self._names.names(np.asarray([key])).get(key)
        return None if found is None or found[0] != item_id else (key, found[1])

    def _change(self, keys: np.ndarray, vectors: np.ndarray | None) -> None:
        with self._lock:
            _replay(self._index, [(keys, vectors)])
            if self._changes is not None:
                self._changes.append((keys, vectors))

    def _grow_if_due(self) -> None:
        if not self.ivf_threshold or len(self) < self._build_at or self._changes is not None:
            return
        # Unlocked: this thread is the index's only writer, and searches only read it.
        keys, vectors = growth.contents(self._index)
        with self._lock:
            self._changes = []
        self._builder = threading.Thread(
            target=self._build, args=(keys, vectors), name="index-build", daemon=True
        )
        self._builder.start()

    def _fit_if_due(self) -> None:
        """Refit a compressed index's lists once it has grown by REFIT_GROWTH (not while a
        build runs: the built index replaces it)."""
        index = self._index
        if not isinstance(index, faiss.IndexIVF) or self._changes is not None:
            return
        if index.ntotal < self._fitted_at * (1 + growth.REFIT_GROWTH):
            return
        with self._lock:
            growth.fit_lists(index)
        self._fitted_at = index.ntotal
        heap.give_back()

    def _build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Train and fill the new index, catch it up with the recorded changes, swap."""
        next_build_at = max(self._build_at, len(keys)) * growth.REGROW_FACTOR
        try:
            built = growth.build_compressed(vectors, keys, self.trainer)
            del vectors
            while True:
                # Refitted after each catch-up too: a backlog grows lists past their headroom,
                # and FAISS doubles a full list.
                growth.fit_lists(built)
                fitted_at = built.ntotal
                with self._lock:
                    backlog, self._changes = self._changes or [], []
                    if sum(len(changed) for changed, _ in backlog) <= SWAP_BACKLOG:
                        _replay(built, backlog)
                        self._index, self._changes = built, None
                        self._build_at, self._fitted_at = next_build_at, fitted_at
                        break
                _replay(built, backlog)
            log.info("index grew into %s: %d items, %d lists", self.kind, built.ntotal, built.nlist)
        except Exception:
            log.exception("index build failed; the index stays as it was")
            with self._lock:
                self._changes, self._build_at = None, next_build_at

    def vector(self, item_id: str) -> np.ndarray | None:
        found = self.labelled_vector(item_id)
        return None if found is None else found[0]

    def labelled_vector(self, item_id: str) -> tuple[np.ndarray, str | None] | None:
        """(vector, label) from one lookup of the item's name, None if it is not indexed."""
        entry = self._entry(item_id)
        if entry is None:
            return None
        with self._lock:
            return growth.vector(self._index, entry[0]), entry[1]

    def search_by_id(
        self, item_id: str, k: int, label: str | None = None
    ) -> tuple[np.ndarray, list[Hit]] | None:
        """The item's vector and its k nearest here (the item among them), None if it is not
        indexed: what a search by id asks of the shard its key goes to, in one call."""
        vector = self.vector(item_id)
        if vector is None:
            return None
        return vector, self.search(vector[np.newaxis], k, label)[0]

    def search(self, queries: np.ndarray, k: int, label: str | None = None) -> list[list[Hit]]:
        """Nearest first; with `label`, only items of that label are candidates, searched in
        every list of a compressed index. Distances are exact while the index is flat and
        from its codes once it is compressed."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        params = None
        if label is None:
            k = min(k, len(self))
        else:
            candidates = self._names.keys_with_label(label)
            k = min(k, len(candidates))
        if k == 0:
            return [[] for _ in range(len(queries))]
        with self._lock:
            if label is not None:
                params = growth.among(self._index, candidates)
            distances, keys = self._index.search(queries, k, params=params)
        names = self._names.names(keys[keys >= 0])
        return [
            [
                Hit(*names[key], float(d2))
                for d2, key in zip(row_d.tolist(), row_k.tolist(), strict=True)
                if key in names
            ]
            for row_d, row_k in zip(distances, keys, strict=True)
        ]

    def to_state(self) -> dict:
        """Everything needed to rebuild this index exactly, as plain data."""
        with self._lock:
            blob = growth.to_blob(self._index)
        return {
            "format": STATE_FORMAT,
            "dim": self.dim,
            "ivf_threshold": self.ivf_threshold,
            "build_at": self._build_at,
            "names": self._names.dump(),
            "faiss": blob,
        }

    @classmethod
    def from_state(cls, state: dict) -> "VectorIndex":
        """A build that was running when the state was taken starts again on the next upsert."""
        if state.get("format") != STATE_FORMAT:
            raise StateFormatError("an index state of an older format")
        index = cls(state["dim"], state["ivf_threshold"])
        index._build_at = state["build_at"]
        index._index = growth.from_blob(state["faiss"])
        if isinstance(index._index, faiss.IndexIVF):
            growth.fit_lists(index._index)
            index._fitted_at = index._index.ntotal
        index._names.load(state["names"])
        return index
