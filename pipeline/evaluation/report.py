"""The evaluation report: one JSON record, one markdown table, ROC and DET curves per task."""

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from pipeline.evaluation.harness import CandidateResult
from pipeline.train.metrics import roc_points

# (metric key, column title, format): "%" mean ± std in percent, "f" mean ± std, "n" mean.
COLUMNS = (
    ("eer", "EER", "%"),
    ("auc", "ROC-AUC", "f"),
    ("accuracy", "accuracy", "%"),
    ("far", "FAR", "%"),
    ("frr", "FRR", "%"),
    ("tar_at_far_1pct", "TAR@FAR=1%", "%"),
    ("one_shot_accuracy", "1-shot N-way", "%"),
    ("identities", "N", "n"),
    ("train_seconds", "train s/fold", "n"),
)
# DET axes are clipped here: a rate of exactly 0 or 1 has no normal deviate.
_DET_FLOOR = 1e-4


def cell(summary: dict[str, dict[str, float]], key: str, style: str) -> str:
    """One metric over the folds as the column's format; "–" where it is not reported."""
    if key not in summary:
        return "–"
    mean, std = summary[key]["mean"], summary[key]["std"]
    if style == "%":
        return f"{100 * mean:.1f} ± {100 * std:.1f} %"
    if style == "f":
        return f"{mean:.4f} ± {std:.4f}"
    return f"{mean:.0f}"


def markdown_table(results: Sequence[CandidateResult]) -> str:
    """Rows: task × candidate; metrics as mean ± std over the folds (N: test identities)."""
    header = ["task", "candidate", "folds", *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        row = [result.task, result.candidate, str(len(result.folds))]
        row += [cell(result.summary, key, style) for key, _, style in COLUMNS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: Sequence[CandidateResult], task: str, out_dir: Path) -> list[Path]:
    """ROC (TAR against FAR, log FAR) and DET (FRR against FAR on normal-deviate axes) of every
    candidate on `task`, pairs pooled over the folds."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    chosen = [r for r in results if r.task == task]
    deviate = np.vectorize(NormalDist().inv_cdf)
    roc, roc_ax = plt.subplots(figsize=(6, 5))
    det, det_ax = plt.subplots(figsize=(6, 5))
    for result in chosen:
        far, frr = roc_points(result.distances, result.same)
        label = f"{result.candidate} (EER {100 * result.summary['eer']['mean']:.1f} %)"
        roc_ax.plot(np.maximum(far, _DET_FLOOR), 1.0 - frr, label=label)
        det_ax.plot(
            deviate(np.clip(far, _DET_FLOOR, 1 - _DET_FLOOR)),
            deviate(np.clip(frr, _DET_FLOOR, 1 - _DET_FLOOR)),
            label=label,
        )
    roc_ax.set(xscale="log", xlabel="FAR", ylabel="TAR", title=f"ROC: {task} (folds pooled)")
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    shown = deviate(np.array([_DET_FLOOR, 0.6]))
    det_ax.set(
        xlim=shown,
        ylim=shown,
        xticks=deviate(ticks),
        xticklabels=[f"{t:g}" for t in ticks],
        yticks=deviate(ticks),
        yticklabels=[f"{t:g}" for t in ticks],
        xlabel="FAR",
        ylabel="FRR",
        title=f"DET: {task} (folds pooled)",
    )
    paths = []
    for figure, axes, kind in ((roc, roc_ax, "roc"), (det, det_ax, "det")):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        path = out_dir / f"{task}-{kind}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths


def write_report(
    results: Sequence[CandidateResult], out_dir: Path, about: dict[str, Any]
) -> list[Path]:
    """eval.json, eval.md and the curves of every task under `out_dir`; `about` says what was
    evaluated and how (protocol, configs, machine)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {**about, "results": [r.to_dict() for r in results]}
    json_path = out_dir / "eval.json"
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    md_path = out_dir / "eval.md"
    md_path.write_text(markdown_table(results))
    paths = [json_path, md_path]
    for task in dict.fromkeys(r.task for r in results):
        paths += plot_curves(results, task, out_dir)
    return paths
