"""One scoring routine for held-out data, so the threshold a model is calibrated with, the
numbers the promotion gate compares and the evaluation report can never disagree."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.embed.energy import Energy
from pipeline.embed.model import EmbeddingModel
from pipeline.train.metrics import (
    accuracy_at,
    eer,
    far_frr,
    nearest_neighbour_accuracy,
    one_shot_accuracy,
    pair_distances,
    roc_auc,
    tar_at_far,
)
from pipeline.train.sample import Sample

# The FAR at which the true-accept rate is reported (tar_at_far_1pct).
REPORTED_FAR = 0.01


@dataclass(frozen=True)
class Scores:
    """Metrics over every pair of the samples; `threshold` is their EER operating point.

    `distances` and `same` are the pairs themselves, kept for curves (empty when a caller
    builds Scores by hand).
    """

    metrics: dict[str, Any]
    threshold: float
    pairs: int
    genuine_pairs: int
    distances: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    same: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=bool), repr=False, compare=False
    )


def score_model(
    model: EmbeddingModel, samples: Sequence[Sample], threshold: float | None = None
) -> Scores:
    """Score `model` on every pair of `samples`.

    Without `threshold` (calibration) accuracy, FAR and FRR are read at the samples' own EER
    point; with it (evaluating a calibrated model) they are read at that threshold, which is
    what the model would answer "same" with.
    """
    embeddings = model.embed(np.stack([s.x for s in samples]))
    return score_embeddings(embeddings, [s.label for s in samples], model.energy, threshold)


def score_embeddings(
    embeddings: np.ndarray,
    labels: Sequence[str],
    energy: Energy,
    threshold: float | None = None,
) -> Scores:
    """score_model for embeddings from anywhere (the benchmark's pretrained peers)."""
    label_array = np.asarray(labels)
    distances, same = pair_distances(embeddings, label_array, energy)
    equal_error, eer_threshold = eer(distances, same)
    operating = eer_threshold if threshold is None else threshold
    far, frr = far_frr(distances, same, operating)
    metrics = {
        "eer": equal_error,
        "auc": roc_auc(-distances[same], -distances[~same]),
        "accuracy": accuracy_at(distances, same, operating),
        "far": far,
        "frr": frr,
        "threshold": operating,
        "eer_threshold": eer_threshold,
        "tar_at_far_1pct": tar_at_far(distances, same, REPORTED_FAR),
        "genuine_mean": float(distances[same].mean()),
        "impostor_mean": float(distances[~same].mean()),
        "nn_accuracy": nearest_neighbour_accuracy(embeddings, label_array),
        "one_shot_accuracy": one_shot_accuracy(embeddings, label_array),
        "identities": len(set(labels)),
    }
    return Scores(metrics, eer_threshold, len(distances), int(same.sum()), distances, same)
