"""Atomic, checksummed snapshots of one index together with the Kafka offsets it reflects.

The index and the offsets are one unit: restoring an index without the exact
offsets it covers would replay items twice or skip them. A snapshot is written
to a temporary file, fsynced and renamed, so a crash leaves either the old or
the new file; a torn or corrupted file fails its checksum and the previous
snapshot is used instead.
"""

import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.index.vector_index import StateFormatError, VectorIndex
from pipeline.store.atomic import write_atomically

log = logging.getLogger(__name__)

MAGIC = b"TWSNAP1\n"
KEEP = 2


@dataclass
class Snapshot:
    model_version: str
    # partition -> the next offset to consume from the modality's item topic
    offsets: dict[int, int]
    index: VectorIndex


def _encode(snapshot: Snapshot) -> bytes:
    state = snapshot.index.to_state()
    faiss_bytes = np.asarray(state.pop("faiss")).tobytes()
    body = faiss_bytes + state.pop("names")
    meta = {
        "model_version": snapshot.model_version,
        "offsets": {str(p): o for p, o in snapshot.offsets.items()},
        "index": state,
        "faiss_bytes": len(faiss_bytes),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    header = json.dumps(meta).encode()
    header_sum = hashlib.sha256(header).digest()
    return MAGIC + struct.pack(">Q", len(header)) + header_sum + header + body


def _decode(blob: bytes) -> Snapshot:
    if not blob.startswith(MAGIC):
        raise ValueError("not a twinstream snapshot")
    pos = len(MAGIC)
    (header_len,) = struct.unpack(">Q", blob[pos : pos + 8])
    header_sum = blob[pos + 8 : pos + 40]
    header = blob[pos + 40 : pos + 40 + header_len]
    if hashlib.sha256(header).digest() != header_sum:
        raise ValueError("snapshot header checksum mismatch")
    meta = json.loads(header)
    body = blob[pos + 40 + header_len :]
    if hashlib.sha256(body).hexdigest() != meta["body_sha256"]:
        raise ValueError("snapshot body checksum mismatch")
    split = meta["faiss_bytes"]
    state = meta["index"] | {
        "faiss": np.frombuffer(body, dtype=np.uint8, count=split),
        "names": body[split:],
    }
    return Snapshot(
        model_version=meta["model_version"],
        offsets={int(p): o for p, o in meta["offsets"].items()},
        index=VectorIndex.from_state(state),
    )


def _snapshot_files(directory: Path) -> list[Path]:
    """Newest first; the sequence number is in the name so no clock is trusted."""
    return sorted(directory.glob("snapshot-*.tws"), key=lambda p: int(p.stem.split("-")[1]))[::-1]


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    existing = _snapshot_files(directory)
    seq = int(existing[0].stem.split("-")[1]) + 1 if existing else 1
    final = directory / f"snapshot-{seq:012d}.tws"
    write_atomically(final, _encode(snapshot))
    for old in _snapshot_files(directory)[KEEP:]:
        old.unlink()
    return final


def read_latest_snapshot(directory: Path) -> Snapshot | None:
    """The newest snapshot that passes its checksums, or None."""
    for path in _snapshot_files(directory) if directory.exists() else []:
        try:
            return _decode(path.read_bytes())
        except StateFormatError:
            log.warning("%s holds an index of an older format: not loaded", path.name)
        except (ValueError, KeyError, struct.error, json.JSONDecodeError):
            continue
    return None
