"""One scoring routine for held-out data, so the threshold a model is calibrated with, the
numbers the promotion gate compares and the evaluation report can never disagree."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.embed.model import EmbeddingModel
from pipeline.train.metrics import (
    accuracy_at,
    eer,
    far_frr,
    nearest_neighbour_accuracy,
    pair_distances,
    roc_auc,
)
from pipeline.train.sample import Sample


@dataclass(frozen=True)
class Scores:
    """Metrics over every pair of the samples; `threshold` is their EER operating point."""

    metrics: dict[str, Any]
    threshold: float
    pairs: int
    genuine_pairs: int


def score_model(model: EmbeddingModel, samples: Sequence[Sample]) -> Scores:
    labels = np.array([s.label for s in samples])
    embeddings = model.embed(np.stack([s.x for s in samples]))
    distances, same = pair_distances(embeddings, labels, model.energy)
    equal_error, threshold = eer(distances, same)
    far, frr = far_frr(distances, same, threshold)
    metrics = {
        "eer": equal_error,
        "auc": roc_auc(-distances[same], -distances[~same]),
        "accuracy": accuracy_at(distances, same, threshold),
        "far": far,
        "frr": frr,
        "threshold": threshold,
        "genuine_mean": float(distances[same].mean()),
        "impostor_mean": float(distances[~same].mean()),
        "nn_accuracy": nearest_neighbour_accuracy(embeddings, labels),
    }
    return Scores(metrics, threshold, len(distances), int(same.sum()))
