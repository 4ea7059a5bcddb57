"""`twinstream eval`: one modality's tasks, one candidate, the report written to a folder.

Two kinds of candidate (the CLI's `--model` switch):
- no model: the service's production config (ENCODERS + the preset `TRAIN_PRESET` names) is
  trained afresh, epoch-bounded, on each fold's training side and scored on its unseen test
  side; this is the honest number for "how well does what we train recognise new people
  or new words";
- a stored model version: scored as it is on each fold's test side. A model trained on the
  stream's items has usually seen the demo data, test folds included, so its numbers are then
  an upper bound, not a measure of generalisation; they are honest only for a model trained
  on data disjoint from the demo sets (e.g. `twinstream train --exclude 'orl/*'`).
"""

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.embed.config import ENCODERS, PRESETS, TrainConfig
from pipeline.embed.model import EmbeddingModel
from pipeline.evaluation.harness import CandidateResult, Scorer, evaluate, stored, trained
from pipeline.evaluation.protocols import FOLDS, MODALITY_TASKS, SEED, TASKS, describe
from pipeline.evaluation.report import write_report
from schemas.items import Modality

# Folds train until their epochs are done, not until a wall clock runs out: on a busy shared
# machine a preset's max_seconds stops training after a share of its epochs, and the numbers
# would measure the load instead of the config (`train s/fold` shows what it cost).
EPOCH_BOUND_SECONDS = 3600.0


def epoch_bounded(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, max_seconds=EPOCH_BOUND_SECONDS)


def production_candidate(modality: Modality, preset: str) -> tuple[str, Scorer, dict[str, Any]]:
    encoder, train = ENCODERS[modality], epoch_bounded(PRESETS[modality][preset])
    about = {"encoder": encoder.to_dict(), "train": train.to_dict(), "preset": preset}
    return f"production ({preset})", trained(encoder, train), about


def model_candidate(model: EmbeddingModel) -> tuple[str, Scorer, dict[str, Any]]:
    about = {"model": model.version, "encoder": model.config.to_dict(), "may_overlap": True}
    return model.version, stored(model), about


def run_eval(
    modality: Modality,
    candidate: tuple[str, Scorer, dict[str, Any]],
    out_dir: Path,
    progress: Callable[[str], None],
) -> tuple[list[CandidateResult], list[Path]]:
    """Score `candidate` on every task of `modality`; write eval.json, eval.md and curves."""
    name, scorer, about = candidate
    input_name = about["encoder"]["input"]
    tasks = [TASKS[task](input_name=input_name) for task in MODALITY_TASKS[modality]]
    results = [evaluate(task, name, scorer, progress) for task in tasks]
    about = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "modality": modality.value,
        "protocol": {"folds": FOLDS, "seed": SEED, "tasks": [describe(t) for t in tasks]},
        "candidate": {"name": name, **about},
    }
    return results, write_report(results, out_dir, about)
