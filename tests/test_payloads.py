"""The payload store makes a batch durable with two filesystem syncs, never one per file.

Real ORL bytes in a real directory; only the sync is observed, to see what exists by name at
the moment each one runs.
"""

import os
from pathlib import Path

import pytest

from pipeline.data.orl import iter_orl
from pipeline.store import payloads as payloads_module
from pipeline.store.payloads import PayloadStore, sync_filesystem


def _on_disk(root: Path) -> tuple[int, int]:
    """(payloads under their hash, payloads still under a temporary name)."""
    files = [p for p in root.glob("*/*") if p.is_file()]
    staged = sum(p.suffix == ".tmp" for p in files)
    return len(files) - staged, staged


def test_a_batch_is_named_only_after_its_bytes_are_synced(tmp_path, monkeypatch):
    faces = [face.read_bytes() for face in list(iter_orl())[:100]]
    store = PayloadStore(tmp_path / "payloads")
    syncs: list[tuple[int, int]] = []

    def observed_sync(path: Path) -> None:
        syncs.append(_on_disk(store.root))
        sync_filesystem(path)

    def no_fsync(fd: int) -> None:
        pytest.fail("a payload was fsynced on its own")

    monkeypatch.setattr(payloads_module, "sync_filesystem", observed_sync)
    monkeypatch.setattr(os, "fsync", no_fsync)

    addresses = store.put_all([*faces, faces[0]])

    assert syncs == [(0, 100), (100, 0)], "bytes synced under temporary names, then the names"
    assert addresses == [store.address(face) for face in [*faces, faces[0]]]
    assert all(store.get(sha) == face for sha, face in zip(addresses, faces, strict=False))

    assert store.put_all(faces[:10]) == addresses[:10]
    assert len(syncs) == 2, "bytes already stored are neither written nor synced again"
