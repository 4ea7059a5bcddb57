"""Model artifacts every node can reach, with no shared filesystem.

The metadata database holds each registered version's artifact bytes, keyed by sha256; a
node keeps a local copy under its models directory, `<sha256>.pt`. A read takes the local
copy when its sha256 matches, else fetches the bytes from the database, verifies them and
writes the copy atomically. A version registered before the database held artifacts is
published from the file its record names: when a node that has the file first loads it, and
for every version at each `twinstream up` (`publish_local`). A scheduled retraining stores a
candidate each run, so the rejected ones past the newest few lose their artifacts (`prune`).
"""

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.store.atomic import write_atomically
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import ModelRecord
from schemas.items import Modality

log = logging.getLogger(__name__)


class ArtifactUnavailableError(Exception):
    """No copy of a version's artifact with its recorded sha256 is reachable from this node.

    The message names the version and never a path: the API hands it to clients.
    """


@dataclass(frozen=True)
class ModelArtifacts:
    store: MetadataStore
    # This node's copies: Settings.models_dir.
    cache_dir: Path

    def cache_path(self, sha256: str) -> Path:
        return self.cache_dir / f"{sha256}.pt"

    def keep(self, data: bytes) -> Path:
        """Write this node's copy of an artifact; returns where it is."""
        path = self.cache_path(hashlib.sha256(data).hexdigest())
        write_atomically(path, data)
        return path

    def read(self, record: ModelRecord) -> bytes:
        """The version's artifact bytes, verified against `record.artifact_sha256`."""
        data = self._cached(record)
        if data is not None:
            return data
        sha256 = record.artifact_sha256
        if self.cache_path(sha256).exists():
            log.warning("%s: cached artifact does not match its sha256, refetched", record.version)
        data = _matching(self.store.artifact(sha256), sha256)
        if data is None:
            # Registered before the database held artifacts: published from its file, if here.
            data = self._recorded(record)
            if data is None:
                raise ArtifactUnavailableError(
                    f"model version {record.version} cannot be loaded: neither the database "
                    f"nor this node holds its artifact (sha256 {sha256[:12]})"
                )
            self.store.put_artifact(data)
        self.keep(data)
        return data

    def publish_local(self, records: Iterable[ModelRecord]) -> list[str]:
        """Store in the database the artifacts it lacks that this node has (its copy, or the
        file a record names); returns the versions published."""
        records = list(records)
        missing = self.store.missing_artifacts(r.artifact_sha256 for r in records)
        published = []
        for record in records:
            if record.artifact_sha256 not in missing:
                continue
            data = self._cached(record) or self._recorded(record)
            if data is not None:
                self.store.put_artifact(data)
                published.append(record.version)
        return published

    def prune(self, modality: Modality, keep: int) -> list[str]:
        """Drop the artifacts of `modality`'s rejected candidates (versions a retraining run
        registered and did not promote) older than its newest `keep` versions, from the
        database and from this node's copies; returns the versions that lost theirs. Versions no
        run rejected (first models, promotions, versions trained by hand) and the active one
        keep theirs, so a rollback finds whatever served. Other nodes' copies go at their next
        prune or `up`."""
        records = self.store.list_models(modality)
        rejected = {
            run.candidate_version
            for run in self.store.list_runs(modality)
            if run.promoted is False and run.candidate_version
        }
        kept_hashes = {
            r.artifact_sha256
            for n, r in enumerate(records)
            if n < keep or r.active or r.version not in rejected
        }
        old = [r for r in records if r.artifact_sha256 not in kept_hashes]
        stored = {r.artifact_sha256 for r in old} - self.store.missing_artifacts(
            r.artifact_sha256 for r in old
        )
        pruned = [r for r in old if r.artifact_path or r.artifact_sha256 in stored]
        self.store.drop_artifacts([r.version for r in pruned])
        for record in old:
            copy = self.cache_path(record.artifact_sha256)
            # A version from before named a file of its own in this directory.
            recorded = Path(record.artifact_path) if record.artifact_path else copy
            for path in {copy, recorded}:
                if path.parent == self.cache_dir:
                    path.unlink(missing_ok=True)
        return [r.version for r in pruned]

    def _cached(self, record: ModelRecord) -> bytes | None:
        return _file_matching(self.cache_path(record.artifact_sha256), record.artifact_sha256)

    def _recorded(self, record: ModelRecord) -> bytes | None:
        """The file the version was registered with; none once its artifact was pruned."""
        if not record.artifact_path:
            return None
        return _file_matching(Path(record.artifact_path), record.artifact_sha256)


def _file_matching(path: Path, sha256: str) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return _matching(data, sha256)


def _matching(data: bytes | None, sha256: str) -> bytes | None:
    """`data` if it hashes to `sha256`: torn, corrupted or different bytes count as absent."""
    if data is None or hashlib.sha256(data).hexdigest() != sha256:
        return None
    return data
