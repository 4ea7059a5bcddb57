"""A compressed IVF index that still adds, removes and reconstructs by id, with exact re-ranking.

The IVF index holds compact codes and proposes `refine_factor`·k candidates per query; their
distances are then computed again from float16 copies of the vectors and the best k kept. The
codes only have to rank the true neighbours among the candidates, so they can be small.
FAISS's own `IndexRefine` cannot do this here: it implements neither `add_with_ids` nor
`remove_ids` (faiss 1.15), and its refine vectors are addressed by position, not by id.
So the float16 copies live in `RefineStore`, which also answers `reconstruct`.
"""

import json
import struct

import faiss
import numpy as np

MAGIC = b"TWRIVF1\n"
# Rows of queries re-ranked at once: bounds the (rows, candidates, dim) float32 gather.
RERANK_CHUNK = 256
# Tombstoned rows are dropped once they are this share of the store.
COMPACT_SHARE = 4
# The store grows by this factor when full, so appends are amortised O(1).
GROWTH = 1.5


class RefineStore:
    """float16 vectors by int64 id.

    Ids are kept sorted so that a batch is looked up with one `searchsorted`; the service
    hands out ids in increasing order, so adds are appends. Removed rows are tombstones
    until they are a `1/COMPACT_SHARE` of the store.
    """

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self.dim = dim
        self._ids = np.empty(capacity, dtype=np.int64)
        self._live = np.empty(capacity, dtype=bool)
        self._vectors = np.empty((capacity, dim), dtype=np.float16)
        self._rows = 0
        self._dead = 0

    def __len__(self) -> int:
        return self._rows - self._dead

    @property
    def nbytes(self) -> int:
        """Bytes of the rows in use (capacity beyond them is never touched, so never resident)."""
        return self._rows * (self._ids.itemsize + self._live.itemsize + self._vectors[0].nbytes)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        in_order = bool(np.all(ids[1:] > ids[:-1])) and (
            self._rows == 0 or ids[0] > self._ids[self._rows - 1]
        )
        if not in_order:
            self._compact()
        self._reserve(self._rows + len(ids))
        end = self._rows + len(ids)
        self._ids[self._rows : end] = ids
        self._live[self._rows : end] = True
        self._vectors[self._rows : end] = vectors
        self._rows = end
        if not in_order:
            # Rare (ids from elsewhere): one stable sort restores the order lookups rely on;
            # after the compaction every row is live, so `_live` needs no reordering.
            order = np.argsort(self._ids[:end], kind="stable")
            self._ids[:end] = self._ids[order]
            self._vectors[:end] = self._vectors[order]

    def remove(self, ids: np.ndarray) -> int:
        rows = self.rows(np.asarray(ids, dtype=np.int64))
        rows = np.unique(rows[rows >= 0])
        self._live[rows] = False
        self._dead += len(rows)
        if self._dead * COMPACT_SHARE > self._rows:
            self._compact()
        return len(rows)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The row of each id, -1 where it is not stored."""
        if not self._rows:
            return np.full(ids.shape, -1, dtype=np.int64)
        stored = self._ids[: self._rows]
        at = np.minimum(np.searchsorted(stored, ids), self._rows - 1)
        found = (stored[at] == ids) & self._live[at]
        return np.where(found, at, -1)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of `ids`; KeyError naming one that is not stored."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.rows(ids)
        if np.any(rows < 0):
            raise KeyError(f"id {int(ids[rows < 0][0])} is not stored")
        return self._vectors[rows].astype(np.float32)

    def squared_l2(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """(q, c) squared distances from each query to its row of candidate ids; inf where an
        id is -1 or not stored."""
        rows = self.rows(ids)
        vectors = self._vectors[np.maximum(rows, 0)].astype(np.float32)
        # Differences, not |q|² + |v|² - 2q·v: a near-duplicate's distance stays exact.
        d2 = np.square(vectors - queries[:, None, :]).sum(axis=2)
        d2[rows < 0] = np.inf
        return d2

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float16 vectors) of every stored id, in id order: views, valid until the next
        change."""
        self._compact()
        return self._ids[: self._rows], self._vectors[: self._rows]

    def _reserve(self, rows: int) -> None:
        if rows <= len(self._ids):
            return
        capacity = max(rows, int(len(self._ids) * GROWTH))
        for name in ("_ids", "_live", "_vectors"):
            old = getattr(self, name)
            new = np.empty((capacity, *old.shape[1:]), dtype=old.dtype)
            new[: self._rows] = old[: self._rows]
            setattr(self, name, new)

    def _compact(self) -> None:
        if not self._dead:
            return
        keep = np.flatnonzero(self._live[: self._rows])
        self._ids[: len(keep)] = self._ids[keep]
        self._vectors[: len(keep)] = self._vectors[keep]
        self._live[: len(keep)] = True
        self._rows, self._dead = len(keep), 0


class RefinedIVF:
    """The subset of the FAISS index interface that VectorIndex uses, over an IVF index with
    its ids and a RefineStore with the same ids."""

    def __init__(self, ivf: faiss.IndexIVF, store: RefineStore, refine_factor: int) -> None:
        self.ivf = ivf
        self.store = store
        self.refine_factor = refine_factor

    @property
    def ntotal(self) -> int:
        return len(self.store)

    @property
    def nlist(self) -> int:
        return self.ivf.nlist

    @property
    def d(self) -> int:
        return self.ivf.d

    def add_with_ids(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.ivf.add_with_ids(vectors, ids)
        self.store.add(ids, vectors)

    def remove_ids(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        # Without a direct map IVF removal scans every list; skip it when nothing is there.
        present = ids[self.store.rows(ids) >= 0]
        if not len(present):
            return 0
        self.ivf.remove_ids(present)
        return self.store.remove(present)

    def reconstruct(self, key: int) -> np.ndarray:
        return self.store.get(np.asarray([key]))[0]

    def reconstruct_batch(self, ids: np.ndarray) -> np.ndarray:
        return self.store.get(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's answer shape: (distances, ids), nearest first, -1 and inf where none."""
        _, candidates = self.ivf.search(queries, k * self.refine_factor)
        distances = np.empty((len(queries), k), dtype=np.float32)
        ids = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), RERANK_CHUNK):
            rows = slice(start, start + RERANK_CHUNK)
            d2 = self.store.squared_l2(queries[rows], candidates[rows])
            best = np.argsort(d2, axis=1, kind="stable")[:, :k]
            distances[rows] = np.take_along_axis(d2, best, axis=1)
            ids[rows] = np.take_along_axis(candidates[rows], best, axis=1)
        ids[~np.isfinite(distances)] = -1
        return distances, ids

    def to_bytes(self) -> bytes:
        ids, vectors = self.store.live()
        ivf = faiss.serialize_index(self.ivf)
        header = json.dumps(
            {"refine_factor": self.refine_factor, "rows": len(ids), "ivf_bytes": len(ivf)}
        ).encode()
        # Arrays join through their buffers: the index is copied once, into the result.
        return b"".join((MAGIC, struct.pack(">Q", len(header)), header, ivf, ids, vectors))

    @classmethod
    def from_bytes(cls, blob: bytes | np.ndarray) -> "RefinedIVF":
        data = as_uint8(blob)
        at = len(MAGIC)
        if not cls.is_blob(data):
            raise ValueError("not a refined IVF index")
        (header_len,) = struct.unpack(">Q", data[at : at + 8].tobytes())
        at += 8
        header = json.loads(data[at : at + header_len].tobytes())
        at += header_len
        ivf = faiss.deserialize_index(data[at : at + header["ivf_bytes"]])
        at += header["ivf_bytes"]
        rows = header["rows"]
        ids = np.frombuffer(data, np.int64, rows, at)
        vectors = np.frombuffer(data, np.float16, rows * ivf.d, at + ids.nbytes)
        store = RefineStore(ivf.d, rows)
        store.add(ids, vectors.reshape(rows, ivf.d))
        return cls(ivf, store, header["refine_factor"])

    @staticmethod
    def is_blob(blob: bytes | np.ndarray) -> bool:
        return as_uint8(blob)[: len(MAGIC)].tobytes() == MAGIC


def as_uint8(blob: bytes | np.ndarray) -> np.ndarray:
    """A serialised index as FAISS and the readers here take it, without a copy."""
    return blob if isinstance(blob, np.ndarray) else np.frombuffer(blob, dtype=np.uint8)
