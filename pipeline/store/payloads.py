"""Content-addressed retention of raw item bytes.

Retraining and re-embedding read items from here, so they never need the
producer again; addressing by sha256 makes a replayed item a no-op write, and
lets items with identical bytes share one file (so deleting one item must not
delete the file while another still points at it: see pipeline/store/retention.py).
"""

import hashlib
import os
from pathlib import Path


class PayloadStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
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
