"""The bare encoder's pace: the baseline the ingest and GPU benchmarks divide by."""

import time
from collections.abc import Sequence

import numpy as np

from pipeline.embed.model import EmbeddingModel


def embed_rate(model: EmbeddingModel, batches: Sequence[np.ndarray], rounds: int = 1) -> float:
    """Items/s of `model.embed` alone over `batches`, `rounds` times. The first batch is embedded
    once beforehand, untimed: the first call pays for thread pools, oneDNN plans, or a CUDA
    context and kernel choice."""
    model.embed(batches[0])
    started = time.perf_counter()
    for _ in range(rounds):
        for batch in batches:
            model.embed(batch)
    return rounds * sum(len(b) for b in batches) / (time.perf_counter() - started)
