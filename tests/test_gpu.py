"""The GPU path: CUDA training and embedding, and every role of a stack placed on one GPU.

Skipped where there is no CUDA device (the development machines and CI have none). On a GPU
machine: `pytest --noconftest tests/test_gpu.py` (it needs neither Kafka nor a database).
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from pipeline.data.orl import iter_orl
from pipeline.embed.config import ENCODERS, PRESETS
from pipeline.embed.model import EmbeddingModel
from pipeline.placement import plan_placement
from pipeline.settings import Settings
from pipeline.train.job import item_samples
from pipeline.train.sample import Sample
from pipeline.train.trainer import TrainResult, train_model
from schemas.items import Modality

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# A role's embeddings must point where the driver's do: TF32 convolutions on the GPU and
# another process's kernel choices move them by ~1e-3, not by anything a search would notice.
AGREEMENT = 0.999


@pytest.fixture(scope="module")
def faces() -> list[Sample]:
    return item_samples(Modality.FACE, iter_orl())


def _train(faces: list[Sample]) -> TrainResult:
    return train_model(faces, ENCODERS[Modality.FACE], PRESETS[Modality.FACE]["quick"])


@pytest.fixture(scope="module")
def trained(faces: list[Sample]) -> TrainResult:
    return _train(faces)


@pytest.fixture(scope="module")
def artifact(trained: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "face.pt"
    trained.model.save(path)
    return path


def _inputs(faces: list[Sample]) -> np.ndarray:
    return np.stack([s.x for s in faces])


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine between two embeddings of the same face (rows are unit length)."""
    return float(np.min(np.sum(a * b, axis=1)))


def test_training_runs_on_the_gpu_and_learns(trained: TrainResult):
    assert trained.model.device.type == "cuda"
    assert next(trained.model.encoder.parameters()).is_cuda
    # Held-out people: far better than chance after the quick preset.
    assert trained.metrics["eer"] < 0.25


def test_a_gpu_trained_artifact_embeds_alike_on_cuda_and_on_the_cpu(
    artifact: Path, faces: list[Sample]
):
    on_gpu = EmbeddingModel.load(artifact)
    on_cpu = EmbeddingModel.load(artifact, device="cpu")
    assert on_gpu.device.type == "cuda"
    inputs = _inputs(faces)
    gpu, cpu = on_gpu.embed(inputs), on_cpu.embed(inputs)
    assert gpu.shape == cpu.shape == (len(faces), on_gpu.embedding_dim)
    assert _agreement(gpu, cpu) > AGREEMENT
    # Same nearest neighbour for (nearly) every face: what the index would answer.
    nearest = [np.argsort(-(e @ e.T), axis=1)[:, 1] for e in (gpu, cpu)]
    assert np.mean(nearest[0] == nearest[1]) > 0.98


class _Role:
    """Stands in for an ingest actor, an API replica or the retraining coordinator: what Ray
    gives each is the question, and each embeds with the model as the real ones do."""

    def __init__(self, artifact: str) -> None:
        self._model = EmbeddingModel.load(artifact)

    def embed(self, inputs: np.ndarray) -> tuple[str, np.ndarray]:
        return self._model.device.type, self._model.embed(inputs)


def _device_trained_on(faces: list[Sample]) -> str:
    return _train(faces).model.device.type


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, float]]:
    ray.init(address="local", num_cpus=8, include_dashboard=False, configure_logging=False)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def test_every_role_of_a_stack_gets_the_one_gpu_at_once(
    cluster: dict[str, float], artifact: Path, faces: list[Sample]
):
    """Ingest actors, API replicas, the coordinator and a training run all hold a slice of the
    GPU at the same time; with whole-GPU reservations the training run would never start."""
    assert cluster.get("GPU", 0) >= 1
    # Six processes: slices of 1/6, a fraction Ray can only keep to 1/10,000.
    settings = Settings(ingest_actors=2, api_replicas=2)
    placement = plan_placement(cluster, settings)
    role = ray.remote(_Role)
    slices = (
        [placement.ingest_gpus] * placement.ingest_actors
        + [placement.api_gpus] * settings.api_replicas
        + [placement.retrain_gpus]
    )
    roles = [role.options(num_cpus=1, num_gpus=g).remote(str(artifact)) for g in slices]
    training = ray.remote(_device_trained_on).options(num_cpus=1, num_gpus=placement.retrain_gpus)
    run = training.remote(faces)
    inputs = _inputs(faces[:64])
    expected = EmbeddingModel.load(artifact).embed(inputs)
    for device, embeddings in ray.get([r.embed.remote(inputs) for r in roles], timeout=300):
        assert device == "cuda"
        assert _agreement(embeddings, expected) > AGREEMENT
    assert ray.get(run, timeout=300) == "cuda"
