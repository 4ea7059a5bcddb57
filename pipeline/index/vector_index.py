"""A FAISS index addressed by string item ids, with labels for filtered search.

FAISS only knows int64 ids, so the mapping lives beside it. `IndexIDMap2` is
used because it supports both `remove_ids` (upserts and tombstones) and
`reconstruct` (queries that name an indexed item instead of sending bytes).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np


@dataclass(frozen=True)
class Hit:
    item_id: str
    label: str | None
    squared_l2: float


class VectorIndex:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
        self._next_id = 0
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._labels: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._ids

    def item_ids(self) -> list[str]:
        return list(self._ids)

    def label(self, item_id: str) -> str | None:
        return self._labels[item_id]

    def upsert(
        self, item_ids: Sequence[str], vectors: np.ndarray, labels: Sequence[str | None]
    ) -> None:
        """Replace any earlier vector of the same id, so a key never has two entries."""
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("duplicate ids in one upsert; keep only the newest per id")
        self.delete(item_ids)
        numeric = np.arange(self._next_id, self._next_id + len(item_ids), dtype=np.int64)
        self._next_id += len(item_ids)
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), numeric)
        for item_id, num, label in zip(item_ids, numeric.tolist(), labels, strict=True):
            self._ids[item_id] = num
            self._names[num] = item_id
            self._labels[item_id] = label

    def delete(self, item_ids: Sequence[str]) -> int:
        numeric = [self._ids.pop(item_id) for item_id in item_ids if item_id in self._ids]
        for num in numeric:
            self._labels.pop(self._names.pop(num))
        if numeric:
            self._index.remove_ids(np.asarray(numeric, dtype=np.int64))
        return len(numeric)

    def vector(self, item_id: str) -> np.ndarray | None:
        num = self._ids.get(item_id)
        return None if num is None else self._index.reconstruct(num)

    def search(self, queries: np.ndarray, k: int, label: str | None = None) -> list[list[Hit]]:
        """Nearest first; with `label`, only items of that label are candidates."""
        params = None
        if label is not None:
            allowed = [self._ids[i] for i, lab in self._labels.items() if lab == label]
            if not allowed:
                return [[] for _ in range(len(queries))]
            params = faiss.SearchParameters(
                sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            )
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in range(len(queries))]
        distances, numeric = self._index.search(
            np.ascontiguousarray(queries, dtype=np.float32), k, params=params
        )
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
        return {
            "dim": self.dim,
            "next_id": self._next_id,
            "ids": self._ids,
            "labels": self._labels,
            "faiss": faiss.serialize_index(self._index),
        }

    @classmethod
    def from_state(cls, state: dict) -> "VectorIndex":
        index = cls(state["dim"])
        index._index = faiss.deserialize_index(state["faiss"])
        index._next_id = state["next_id"]
        index._ids = dict(state["ids"])
        index._names = {num: item_id for item_id, num in index._ids.items()}
        index._labels = dict(state["labels"])
        return index
