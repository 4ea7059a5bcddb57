"""Content-addressed retention of raw item bytes.

Retraining and re-embedding read items from here, so they never need the
producer again; addressing by sha256 makes a replayed item a no-op write, and
lets items with identical bytes share one file (so deleting one item must not
delete the file while another still points at it: see pipeline/store/retention.py).
"""

import ctypes
import ctypes.util
import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def sync_filesystem(path: Path) -> None:
    """Flush everything written to the filesystem holding `path` (Linux `syncfs`; `sync`
    where the C library has no such call): one journal commit for a whole batch."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


class PayloadStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    @staticmethod
    def address(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by every writer and deleter of this directory, in every process using it:
        deciding that a file is unreferenced and removing it must not interleave with
        another process storing the same bytes for a new item."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put_all(self, payloads: Iterable[bytes]) -> list[str]:
        """Store each payload durably; returns their addresses in order.

        Durable the way one fsync per file would make them, for two filesystem syncs a
        batch: every new payload is written under a temporary name, synced, and only then
        named by its hash, and the names synced. A name therefore never points at bytes a
        crash could lose, which `put_all` relies on when it finds a name present. One fsync
        per file cost about as much CPU per item as decoding it
        (docs/experiments/2026-11-27-payloads-synced-a-batch-at-a-time.md).
        """
        addresses, staged = [], {}
        for data in payloads:
            sha256 = self.address(data)
            addresses.append(sha256)
            path = self._path(sha256)
            if path in staged or path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            staged[path] = path.with_suffix(f".{os.getpid()}.tmp")
            staged[path].write_bytes(data)
        if staged:
            sync_filesystem(self.root)
            for path, tmp in staged.items():
                tmp.replace(path)
            sync_filesystem(self.root)
        return addresses

    def get(self, sha256: str) -> bytes:
        return self._path(sha256).read_bytes()

    def __contains__(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> bool:
        """Remove the bytes; False when they were already gone (a replayed delete)."""
        try:
            self._path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True
