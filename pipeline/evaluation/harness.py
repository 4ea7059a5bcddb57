"""Scoring candidates fold by fold on a protocol's test sets, with the one scoring routine.

A candidate is anything that can score a fold: a config trained on the fold's training side
(and calibrated there, as the service calibrates), a stored model, or a pretrained embedder.
All of them meet the same test pairs and the same metric code, which is what makes a table of
them a comparison.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.embed.config import EncoderConfig, TrainConfig
from pipeline.embed.energy import EuclideanEnergy
from pipeline.embed.model import EmbeddingModel
from pipeline.evaluation.protocols import Fold, Task
from pipeline.evaluation.scoring import Scores, score_embeddings, score_model
from pipeline.train.metrics import eer, pair_distances
from pipeline.train.sample import Sample
from pipeline.train.trainer import TrainResult, train_model

Scorer = Callable[[Task, Fold], Scores]
Embedder = Callable[[Sequence[Sample]], np.ndarray]
Progress = Callable[[str], None]

# What a summary averages over folds.
SUMMARISED = (
    "auc",
    "eer",
    "accuracy",
    "far",
    "frr",
    "tar_at_far_1pct",
    "one_shot_accuracy",
    "identities",
    "train_seconds",
)


@dataclass(frozen=True)
class CandidateResult:
    """One candidate on one task: metrics per fold, their mean and std, and the pooled pairs
    of all folds for the curves."""

    candidate: str
    task: str
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    distances: np.ndarray
    same: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "task": self.task,
            "folds": self.folds,
            "summary": self.summary,
        }


def trained(encoder_config: EncoderConfig, train_config: TrainConfig) -> Scorer:
    """Train on the fold's training side (which calibrates the threshold on a share of its own
    groups, as the service does) and score the unseen test side at that threshold. Tasks that
    share a training side and recipe (faces cropped or framed) share the trained model."""
    models: dict[tuple[Any, ...], TrainResult] = {}

    def score(task: Task, fold: Fold) -> Scores:
        config = task.train_config(train_config)
        key = (tuple(s.id for s in fold.train), tuple(s.label for s in fold.train), config)
        if key not in models:
            models[key] = train_model(fold.train, encoder_config, config)
        result = models[key]
        scores = score_model(result.model, fold.test, threshold=result.threshold)
        seconds = {"train_seconds": result.metrics["train_seconds"]}
        return dataclasses.replace(scores, metrics=scores.metrics | seconds)

    return score


def stored(model: EmbeddingModel) -> Scorer:
    """A model as it is: scored on each fold's test side at its own threshold. Nothing
    guarantees those items were unseen when it was trained (see `twinstream eval --help`)."""

    def score(task: Task, fold: Fold) -> Scores:
        return score_model(model, fold.test, threshold=model.threshold)

    return score


def pretrained(embed: Embedder) -> Scorer:
    """A pretrained embedder (unit-normalised, Euclidean): it learns nothing from the fold, so
    its threshold is calibrated at the EER point of the fold's training side."""
    energy = EuclideanEnergy()

    def unit(samples: Sequence[Sample]) -> np.ndarray:
        vectors = np.asarray(embed(samples), dtype=np.float64)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def score(task: Task, fold: Fold) -> Scores:
        labels = np.array([s.label for s in fold.train])
        distances, same = pair_distances(unit(fold.train), labels, energy)
        threshold = eer(distances, same)[1]
        return score_embeddings(unit(fold.test), [s.label for s in fold.test], energy, threshold)

    return score


def evaluate(task: Task, candidate: str, scorer: Scorer, progress: Progress) -> CandidateResult:
    folds: list[dict[str, Any]] = []
    distances, same = [], []
    for fold in task.folds:
        started = time.monotonic()
        scores = scorer(task, fold)
        progress(
            f"{task.name} {candidate} fold {fold.index + 1}/{len(task.folds)}: "
            f"EER {scores.metrics['eer']:.4f} ({time.monotonic() - started:.0f} s)"
        )
        folds.append(
            {
                "fold": fold.index,
                "train_items": len(fold.train),
                "test_items": len(fold.test),
                "pairs": scores.pairs,
                "genuine_pairs": scores.genuine_pairs,
                **scores.metrics,
            }
        )
        distances.append(scores.distances)
        same.append(scores.same)
    return CandidateResult(
        candidate,
        task.name,
        folds,
        summarise(folds),
        np.concatenate(distances),
        np.concatenate(same),
    )


def summarise(folds: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and (population) std over folds of each summarised metric the folds carry."""
    return {
        key: {
            "mean": float(np.mean([f[key] for f in folds])),
            "std": float(np.std([f[key] for f in folds])),
        }
        for key in SUMMARISED
        if all(key in f for f in folds)
    }
