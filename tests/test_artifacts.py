"""Model artifacts without a shared filesystem: the bytes live in the database (SQLite and
PostgreSQL), each node keeps a verified copy (pipeline/store/artifacts.py)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.orl import iter_orl
from pipeline.embed.config import ENCODERS
from pipeline.embed.encoders import build_encoder
from pipeline.embed.model import EmbeddingModel
from pipeline.inputs import decode_detailed
from pipeline.settings import Settings
from pipeline.store.artifacts import ArtifactUnavailableError, ModelArtifacts
from pipeline.store.metadata import MetadataStore, VersionExistsError
from pipeline.store.records import ModelRecord, RunTrigger
from pipeline.train.job import item_samples, train_and_register
from schemas.items import Modality
from services.api.problems import client_problem

FACE = Modality.FACE
# One optimiser step from fresh weights: a real registered version, in seconds.
ONE_STEP = {"epochs": 1, "max_seconds": 1e-3, "from_pretrained": False}
PEOPLE = {f"s{i}" for i in range(1, 9)}


@pytest.fixture
def store(database_url):
    metadata = MetadataStore(database_url)
    yield metadata
    metadata.close()


@pytest.fixture(scope="module")
def untrained() -> bytes:
    """An artifact that loads (fresh weights are enough to test where bytes come from)."""
    return EmbeddingModel(build_encoder(ENCODERS[FACE]), "face-v1", 0.5, device="cpu").to_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def node(state_dir: Path, database_url: str) -> Settings:
    """One machine of a cluster: its own state directory, the cluster's database."""
    return Settings(state_dir=state_dir, database_url=database_url, train_preset="quick")


def record_for(artifact: bytes, artifact_path: Path, version: str = "face-v1") -> ModelRecord:
    return ModelRecord(
        version=version,
        modality=FACE,
        threshold=0.5,
        energy="euclidean",
        artifact_path=str(artifact_path),
        artifact_sha256=sha256(artifact),
        active=True,
    )


def test_a_version_registered_on_one_node_loads_on_another(database_url, tmp_path):
    first = node(tmp_path / "first", database_url)
    faces = [face for face in iter_orl() if face.label in PEOPLE]
    run = train_and_register(
        first.model_copy(update={"train_overrides": ONE_STEP}),
        MetadataStore.from_settings(first),
        FACE,
        item_samples(FACE, faces),
        activate=True,
    )
    shot = tmp_path / "shot.pgm"
    shot.write_bytes(faces[0].read_bytes())
    model = run.result.model
    expected = model.embed(decode_detailed(model.config.input, shot.read_bytes()).x[None])[0]
    # Nothing of the first node's disk is left: only the database URL is shared.
    shutil.rmtree(first.state_dir)

    second = node(tmp_path / "second", database_url)
    env = os.environ | {
        "TWINSTREAM_STATE_DIR": str(second.state_dir),
        "TWINSTREAM_DATABASE_URL": database_url,
    }
    embedded = subprocess.run(
        [sys.executable, "-m", "services.cli", "embed", "--modality", "face", str(shot)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert embedded.returncode == 0, embedded.stderr
    vector = json.loads(embedded.stdout)["vector"]
    np.testing.assert_allclose(vector, expected, atol=1e-5)
    cached = second.models_dir / f"{run.record.artifact_sha256}.pt"
    assert sha256(cached.read_bytes()) == run.record.artifact_sha256


def test_a_corrupted_or_torn_copy_is_refetched(store, untrained, tmp_path):
    artifacts = ModelArtifacts(store, tmp_path / "models")
    record = store.register_model(record_for(untrained, tmp_path / "gone.pt"), untrained)
    copy = artifacts.cache_path(record.artifact_sha256)
    assert not copy.exists()
    assert EmbeddingModel.from_record(record, artifacts).version == "face-v1"
    assert copy.read_bytes() == untrained

    flipped = bytearray(untrained)
    flipped[len(flipped) // 2] ^= 0xFF
    for damaged in (bytes(flipped), untrained[: len(untrained) // 3]):
        copy.write_bytes(damaged)
        assert artifacts.read(record) == untrained
        assert copy.read_bytes() == untrained


def test_a_version_stored_nowhere_is_refused_without_paths(store, untrained, tmp_path):
    secret = tmp_path / "private" / "face-v1.pt"
    record = store.register_model(record_for(untrained, secret))
    artifacts = ModelArtifacts(store, tmp_path / "models")
    with pytest.raises(ArtifactUnavailableError) as refused:
        EmbeddingModel.from_record(record, artifacts)
    message = str(refused.value)
    assert "face-v1" in message and "neither the database nor this node" in message
    assert str(tmp_path) not in message
    problem = client_problem(refused.value)
    assert problem is not None and (problem.status, problem.detail) == (409, message)

    # A file at the recorded path with other bytes is not the version either.
    secret.parent.mkdir()
    secret.write_bytes(untrained[:-1])
    with pytest.raises(ArtifactUnavailableError):
        artifacts.read(record)


def test_versions_from_before_are_published_from_their_files(store, untrained, tmp_path):
    legacy = tmp_path / "first" / "models" / "face-v1-0a1b2c3d.pt"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(untrained)
    record = store.register_model(record_for(untrained, legacy))
    assert store.artifact(record.artifact_sha256) is None

    first = ModelArtifacts(store, legacy.parent)
    assert first.publish_local(store.list_models()) == ["face-v1"]
    assert first.publish_local(store.list_models()) == []
    assert store.artifact(record.artifact_sha256) == untrained

    legacy.unlink()
    elsewhere = ModelArtifacts(store, tmp_path / "second" / "models")
    assert EmbeddingModel.from_record(record, elsewhere).version == "face-v1"


def test_a_version_from_before_is_published_when_first_loaded(store, untrained, tmp_path):
    legacy = tmp_path / "face-v1.pt"
    legacy.write_bytes(untrained)
    record = store.register_model(record_for(untrained, legacy))
    ModelArtifacts(store, tmp_path / "models").read(record)
    assert store.artifact(record.artifact_sha256) == untrained


def test_registration_stores_the_bytes_with_the_version_or_not_at_all(store, untrained, tmp_path):
    record = record_for(untrained, tmp_path / "face-v1.pt")
    with pytest.raises(ValueError, match="do not match"):
        store.register_model(record, untrained[:-1])
    assert store.get_model("face-v1") is None

    store.register_model(record, untrained)
    other = replace(record, artifact_sha256=sha256(b"other"))
    with pytest.raises(VersionExistsError):
        store.register_model(other, b"other")
    assert store.missing_artifacts([record.artifact_sha256, other.artifact_sha256]) == {
        other.artifact_sha256
    }


def test_rejected_candidates_past_the_newest_versions_lose_their_artifacts(store, tmp_path):
    """Every scheduled retraining run stores a candidate: pruning drops the rejected ones
    older than a modality's newest `keep` versions, from the database and this node's copies
    (a version from before included, so `up` cannot publish it again). Versions that served
    (the first, a promotion) and the active one stay loadable however old; the other
    modality and files outside the models directory are left alone."""
    models = tmp_path / "models"
    artifacts = ModelArtifacts(store, models)
    outside = tmp_path / "mine" / "face-v2.pt"
    outside.parent.mkdir()
    blobs = {f"face-v{n}": f"face artifact {n}".encode() for n in range(1, 7)}
    paths = {version: artifacts.cache_path(sha256(blob)) for version, blob in blobs.items()}
    paths["face-v2"], paths["face-v3"] = outside, models / "face-v3.pt"
    runs = {"face-v2": False, "face-v3": False, "face-v4": True, "face-v5": False, "face-v6": False}
    for n, (version, blob) in enumerate(blobs.items()):
        record = replace(record_for(blob, paths[version], version), active=n == 0)
        store.register_model(record, None if version == "face-v3" else blob)
        paths[version].parent.mkdir(exist_ok=True)
        paths[version].write_bytes(blob)
        if version in runs:
            run = store.create_run(FACE, RunTrigger.SCHEDULE)
            store.update_run(run.run_id, candidate_version=version, promoted=runs[version])
    audio = b"audio artifact"
    store.register_model(
        replace(record_for(audio, tmp_path / "a.pt", "audio-v1"), modality=Modality.AUDIO), audio
    )

    assert artifacts.prune(FACE, keep=2) == ["face-v3", "face-v2"]
    # face-v3 had no bytes in the database, only its file here: gone too. Neither is
    # published again from a file, and the caller's own file is left where it is.
    assert not paths["face-v3"].exists()
    assert artifacts.publish_local(store.list_models()) == []
    assert store.missing_artifacts(sha256(b) for b in [*blobs.values(), audio]) == {
        sha256(blobs["face-v2"]),
        sha256(blobs["face-v3"]),
    }
    assert outside.read_bytes() == blobs["face-v2"]
    for version in ("face-v2", "face-v3"):
        with pytest.raises(ArtifactUnavailableError):
            artifacts.read(store.get_model(version))
    for version in ("face-v1", "face-v4", "face-v5", "face-v6"):
        assert artifacts.read(store.get_model(version)) == blobs[version]
    assert artifacts.prune(FACE, keep=2) == []
    assert [m.version for m in store.list_models()][-1] == "face-v1"
