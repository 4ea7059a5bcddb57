"""The bare encoder's pace, with or without its input's decoding: the baselines the ingest and
GPU benchmarks divide by."""

import time
from collections.abc import Sequence

import numpy as np

from pipeline.embed.model import EmbeddingModel
from pipeline.inputs import decode


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


def decode_and_embed_rate(
    model: EmbeddingModel, payloads: Sequence[Sequence[bytes]], rounds: int = 1
) -> float:
    """Items/s of decoding each batch of payloads as the model's input (for faces: the front
    end's detection and alignment) and embedding it, in this thread, `rounds` times."""

    def batches() -> list[np.ndarray]:
        return [np.stack([decode(model.config.input, p) for p in batch]) for batch in payloads]

    model.embed(batches()[0])
    started = time.perf_counter()
    for _ in range(rounds):
        for batch in batches():
            model.embed(batch)
    return rounds * sum(len(b) for b in payloads) / (time.perf_counter() - started)
