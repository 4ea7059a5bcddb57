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
# Samples a model is scored on at most. Every pair is scored, so n samples cost n²/2
# distances and several n × n work arrays: 2,048 make 2.1 M pairs (tens of MB), while the
# held-out share of a grown stream — tens of thousands of items at a scheduled retrain —
# would need tens of GB.
MAX_SCORED_SAMPLES = 2048


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
    """Score `model` on every pair of `samples` (of `scored_subset` of them when they are many).

    Without `threshold` (calibration) accuracy, FAR and FRR are read at the samples' own EER
    point; with it (evaluating a calibrated model) they are read at that threshold, which is
    what the model would answer "same" with.
    """
    samples = scored_subset(samples)
    embeddings = model.embed(np.stack([s.x for s in samples]))
    return score_embeddings(embeddings, [s.label for s in samples], model.energy, threshold)


def scored_subset(samples: Sequence[Sample], limit: int = MAX_SCORED_SAMPLES) -> list[Sample]:
    """All samples when they are at most `limit`; else a subset that still measures what
    they would. Each label keeps an even share (at least two, so it still makes genuine pairs
    and a 1-shot query), then whole labels are kept in a seeded order while they fit. The
    choice depends on the samples alone, so a candidate and the active model it is gated
    against are scored on the same pairs, and a calibration reproduces."""
    if len(samples) <= limit:
        return list(samples)
    rng = np.random.default_rng(0)
    by_label: dict[str, list[int]] = {}
    for position, sample in enumerate(samples):
        by_label.setdefault(sample.label, []).append(position)
    members = [by_label[label] for label in sorted(by_label)]
    share = max(2, limit // len(members))
    chosen: list[int] = []
    for index in rng.permutation(len(members)):
        group = members[index]
        kept = rng.choice(group, size=min(share, len(group)), replace=False)
        if len(chosen) + len(kept) > limit:
            break
        chosen.extend(int(position) for position in kept)
    return [samples[position] for position in sorted(chosen)]


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
