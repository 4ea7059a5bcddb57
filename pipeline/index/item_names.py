"""Item ids and labels of one index by FAISS key, in SQLite on local disk, not in the heap.

A shard's index holds d + 8 bytes a vector (codes and key); a Python string and dict entries
per item would more than double that. So the names live in a private temporary SQLite file
(deleted when the index is dropped) with a small page cache: a query looks up the k keys it
returns, a label filter the keys of one label, and the OS page cache keeps what is hot. It
is rebuilt from the index's snapshot at load, so it needs no durability of its own; `dump`
writes it for a snapshot a row at a time, so a checkpoint does not hold a Python object per
item either.

FAISS keys are the first 63 bits of each id's BLAKE2b hash: no counter to keep in step, and
every replica of a shard gives an item the same key. Two ids with one key (about one chance
in 3,000 among 10^8 ids) are caught here: the later one is refused with an error log line.
"""

import hashlib
import json
import logging
import sqlite3
import struct
import threading
from array import array
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

# Pages SQLite keeps in the process (KiB, as its negative cache_size): the rest is read back.
CACHE_KIB = 256
# `dump`'s length of a missing label.
NO_LABEL = -1


def item_keys(item_ids: Sequence[str]) -> np.ndarray:
    """The int64 FAISS key of each id: non-negative, since FAISS reads -1 as "none"."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big") >> 1
            for i in item_ids
        ),
        dtype=np.int64,
        count=len(item_ids),
    )


class Stored(NamedTuple):
    """What `put` did with each row, as masks over them."""

    # Its key names another id: not stored.
    refused: np.ndarray
    # Its id was stored already (its entry in the index is to be replaced).
    replaced: np.ndarray


class ItemNames:
    def __init__(self) -> None:
        # "" is SQLite's private temporary on-disk database.
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._db.executescript(
            f"""
            PRAGMA cache_size = -{CACHE_KIB};
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE names (key INTEGER PRIMARY KEY, item_id TEXT NOT NULL, label TEXT);
            CREATE INDEX by_label ON names (label);
            """
        )
        # One connection, used by the writer and by searches on other threads.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM names").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def put(
        self, keys: np.ndarray, item_ids: Sequence[str], labels: Sequence[str | None]
    ) -> Stored:
        """Store each (key, id, label), but not over another id's key."""
        held = self.held_by(keys)
        replaced = np.asarray([was == i for was, i in zip(held, item_ids, strict=True)], bool)
        refused = np.asarray([was is not None for was in held], bool) & ~replaced
        rows = []
        for k, i, lab, was, bad in zip(keys.tolist(), item_ids, labels, held, refused, strict=True):
            if bad:
                log.error("item %r has the index key of %r: refused", i, was)
            else:
                rows.append((k, i, lab))
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO names VALUES (?, ?, ?)", rows)
        return Stored(refused, replaced)

    def held_by(self, keys: np.ndarray) -> list[str | None]:
        """The id stored under each key, None where there is none."""
        names = self.names(keys)
        return [names.get(k, (None,))[0] for k in keys.tolist()]

    def remove(self, keys: np.ndarray) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM names WHERE key = ?", [(k,) for k in keys.tolist()])

    def names(self, keys: np.ndarray) -> dict[int, tuple[str, str | None]]:
        """key -> (item id, label) of each stored key among `keys`."""
        # One statement text for any number of keys: an `IN (?, ?, …)` of each length would
        # be a statement of its own, and the connection caches each one, its bound values too.
        wanted = json.dumps(list(dict.fromkeys(keys.tolist())))
        with self._lock:
            rows = self._db.execute(
                "SELECT key, item_id, label FROM names"
                " WHERE key IN (SELECT value FROM json_each(?))",
                (wanted,),
            ).fetchall()
        return {key: (item_id, label) for key, item_id, label in rows}

    def keys_with_label(self, label: str) -> np.ndarray:
        with self._lock:
            rows = self._db.execute("SELECT key FROM names WHERE label = ?", (label,)).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def dump(self) -> bytes:
        """Every (key, id, label) in key order, as one blob `load` reads: the row count, the
        keys, the UTF-8 length of each id and label (NO_LABEL for none), then their bytes."""
        keys, lengths, texts = array("q"), array("i"), bytearray()
        with self._lock:
            for key, item_id, label in self._db.execute(
                "SELECT key, item_id, label FROM names ORDER BY key"
            ):
                keys.append(key)
                for text in (item_id, label):
                    if text is None:
                        lengths.append(NO_LABEL)
                    else:
                        raw = text.encode()
                        lengths.append(len(raw))
                        texts += raw
        return b"".join((struct.pack("<Q", len(keys)), keys, lengths, texts))

    def load(self, blob: bytes) -> None:
        """Add the rows of a `dump`."""
        (rows,) = struct.unpack_from("<Q", blob)
        keys = np.frombuffer(blob, np.int64, rows, 8)
        lengths = np.frombuffer(blob, np.int32, 2 * rows, 8 + keys.nbytes)
        ends = np.cumsum(np.maximum(lengths, 0)) + 8 + keys.nbytes + lengths.nbytes
        # (start, end) of each id and label, alternating.
        spans = np.stack([ends - np.maximum(lengths, 0), ends], axis=1).tolist()
        missing = (lengths[1::2] == NO_LABEL).tolist()

        def decoded() -> Iterator[tuple[int, str, str | None]]:
            for j, key in enumerate(keys.tolist()):
                (id_start, id_end), (label_start, label_end) = spans[2 * j], spans[2 * j + 1]
                label = None if missing[j] else blob[label_start:label_end].decode()
                yield key, blob[id_start:id_end].decode(), label

        with self._lock:
            self._db.executemany("INSERT INTO names VALUES (?, ?, ?)", decoded())

    def items(self) -> list[tuple[str, str | None]]:
        """Every (item id, label), in key order."""
        with self._lock:
            return self._db.execute("SELECT item_id, label FROM names ORDER BY key").fetchall()
