"""The `learning-curve` benchmark: face recognition against the number of people trained on.

The face encoder trained from scratch (the `from-scratch` baseline, production until 0.2)
trains on 15, 20, 25 and all 30 of each fold's training people
(same unseen test people, same recipe and epochs) for three (fold split, seed) runs, each
smaller size with two draws of its people: which 15 people a fold keeps moves the EER by
points, as much as the size does, so one draw makes a curve of noise. Each row is reported as
a ratio to the full 30 of the same run, and a power law fitted through the means over runs
and draws says how many training people the face targets would need if the curve went on as
it goes here. Learning curves usually flatten as they grow, so the count is likelier low
than high.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality import TARGETS
from bench.report import BenchReport
from pipeline.embed.config import BASELINES
from pipeline.evaluation.harness import evaluate, trained
from pipeline.evaluation.protocols import face_task, fewer_training_groups
from pipeline.evaluation.suite import epoch_bounded

PEOPLE = (15, 20, 25, 30)
# (fold split, training seed): split 1 assigns the 40 people to folds differently.
RUNS = ((0, 0), (1, 0), (0, 1))
DRAWS = 2
# The curve is fitted to error rates: EER, and the share of 1-shot identifications missed.
ERRORS: dict[str, Callable[[float], float]] = {
    "eer": lambda eer: eer,
    "one_shot_accuracy": lambda accuracy: 1.0 - accuracy,
}


def power_law(people: Sequence[int], errors: Sequence[float]) -> tuple[float, float]:
    """(exponent, scale) of error = scale · people^exponent, least squares in log-log."""
    exponent, log_scale = np.polyfit(np.log(people), np.log(errors), 1)
    return float(exponent), float(math.exp(log_scale))


def people_needed(exponent: float, scale: float, error: float) -> float:
    """Where the fitted power law reaches `error`."""
    return (error / scale) ** (1.0 / exponent)


def _curve(progress: Callable[[str], None]) -> list[dict[str, Any]]:
    encoder, train = BASELINES["from-scratch"]
    train = epoch_bounded(train)
    rows = []
    for split, seed in RUNS:
        task = face_task(seed=split, input_name=encoder.input)
        scorer = trained(encoder, dataclasses.replace(train, seed=seed))
        for people in PEOPLE:
            # All 30 people are one draw whatever the seed.
            for draw in range(DRAWS if people < max(PEOPLE) else 1):
                narrowed = fewer_training_groups(task, people, seed=DRAWS * split + draw)
                summary = evaluate(narrowed, f"{people} people", scorer, progress).summary
                rows.append(
                    {"split": split, "seed": seed, "people": people, "draw": draw}
                    | {metric: summary[metric]["mean"] for metric in ERRORS}
                )
    return rows


def report(rows: list[dict[str, Any]]) -> BenchReport:
    """Ratios to the full training side of each run, the fits, and their table."""
    full = {(r["split"], r["seed"]): r["eer"] for r in rows if r["people"] == max(PEOPLE)}
    rows = [r | {"eer_ratio_to_full": r["eer"] / full[(r["split"], r["seed"])]} for r in rows]
    fits = {}
    for target in (t for t in TARGETS if t.task == "face"):
        error_of = ERRORS[target.metric]
        means = [
            float(np.mean([error_of(r[target.metric]) for r in rows if r["people"] == people]))
            for people in PEOPLE
        ]
        exponent, scale = power_law(PEOPLE, means)
        fits[target.metric] = {
            "mean_error_by_people": dict(zip(PEOPLE, means, strict=True)),
            "exponent": exponent,
            "people_needed_for_target": people_needed(exponent, scale, error_of(target.value)),
        }
    lines = [
        "## learning-curve",
        "",
        "Production face config, trained on k of each fold's 30 training people (same "
        f"unseen test people), {DRAWS} draws of people for k < 30; EER / 1-shot 10-way in %, "
        "EER as a ratio to k = 30 in the same run.",
        "",
        "| k | " + " | ".join(f"split {s}, seed {d}" for s, d in RUNS) + " | mean |",
        "|---|" + "---|" * (len(RUNS) + 1),
    ]
    for people in PEOPLE:
        cells = [
            "; ".join(
                f"{100 * r['eer']:.1f} / {100 * r['one_shot_accuracy']:.1f} "
                f"(× {r['eer_ratio_to_full']:.2f})"
                for r in rows
                if (r["people"], r["split"], r["seed"]) == (people, split, seed)
            )
            for split, seed in RUNS
        ]
        errors = {metric: fit["mean_error_by_people"][people] for metric, fit in fits.items()}
        mean = f"{100 * errors['eer']:.1f} / {100 * (1 - errors['one_shot_accuracy']):.1f}"
        lines.append(f"| {people} | " + " | ".join(cells) + f" | {mean} |")
    lines.append("")
    for metric, fit in fits.items():
        lines.append(
            f"- {metric} error ∝ k^{fit['exponent']:.2f} over the means: the target needs "
            f"about {fit['people_needed_for_target']:.0f} training people"
        )
    return BenchReport(
        name="learning-curve",
        results={"people": list(PEOPLE), "draws": DRAWS, "runs": rows, "fits": fits},
        markdown="\n".join(lines) + "\n",
    )


def run(results_dir: Path, progress: Callable[[str], None] = print) -> BenchReport:
    return report(_curve(progress))
