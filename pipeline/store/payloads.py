"""Content-addressed retention of raw item bytes.

Retraining and re-embedding read items from here, so they never need the
producer again; addressing by sha256 makes a replayed item a no-op write, and
lets items with identical bytes share one file (so deleting one item must not
delete the file while another still points at it: see pipeline/store/retention.py).
"""

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"


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

    def put(self, data: bytes) -> str:
        sha256 = self.address(data)
        path = self._path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        return sha256

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
