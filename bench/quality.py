"""The `quality` benchmark: the production configs, the baselines and pretrained peers, each
on the same unseen-identity / unseen-word test pairs, against the issue's targets.

Baselines trained in this run: `book` (the book's ch. 2 network and recipe) and
`from-scratch` (production until 0.2) for faces; the `quick` preset of the production config
and `ge2e` (the pretrained speaker LSTM) for speech. The production config is
what `make run` trains (ENCODERS + PRESETS "default"), trained epoch-bounded (see
pipeline.evaluation.suite.epoch_bounded). A peer that is not installed is recorded as
skipped with the reason, and the rest goes on.
"""

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bench.peers import PEERS, cached
from bench.report import BenchReport, machine
from pipeline.data.demo import demo_items
from pipeline.embed.config import BASELINES, ENCODERS, PRESETS, EncoderConfig, TrainConfig
from pipeline.evaluation.harness import CandidateResult, Scorer, evaluate, pretrained, trained
from pipeline.evaluation.protocols import FOLDS, SEED, TASKS, describe
from pipeline.evaluation.report import markdown_table, write_report
from pipeline.evaluation.suite import epoch_bounded
from schemas.items import Modality

PRODUCTION = "production"


@dataclass(frozen=True)
class Target:
    task: str
    metric: str
    better: str  # "<=" or ">="
    value: float
    title: str
    # Measured as the task's mean minus this task's, for the same candidate in the same run.
    relative_to: str | None = None

    def met(self, measured: float) -> bool:
        return {"<=": operator.le, ">=": operator.ge}[self.better](measured, self.value)


TARGETS = (
    Target("face", "eer", "<=", 0.003, "ORL face EER, unseen people, mean of 4 folds"),
    Target("face", "one_shot_accuracy", ">=", 0.995, "ORL 1-shot 10-way, unseen people"),
    Target(
        "face-framed",
        "one_shot_accuracy",
        ">=",
        -0.01,
        "the same faces in larger frames: 1-shot, minus the cropped faces'",
        relative_to="face",
    ),
    Target("speaker-unseen", "eer", "<=", 0.05, "speakers never heard: EER"),
    Target("speaker-unseen", "one_shot_accuracy", ">=", 0.95, "speakers never heard: 1-shot"),
    Target("speaker", "eer", "<=", 0.01, "speaker EER, unseen words"),
    Target("italian-word", "eer", "<=", 0.08, "Italian same-word EER, unseen words"),
)
# The trained baseline the targets' "now" column is measured with, per task.
BASELINE_OF = {
    "face": "from-scratch",
    "face-framed": "from-scratch",
    "speaker-unseen": "quick",
    "speaker": "quick",
    "italian-word": "quick",
}


# The baselines each task scores beside production (a speaker model says nothing of words).
BASELINES_FOR = {
    "face": ("book", "from-scratch"),
    "face-framed": ("book", "from-scratch"),
    "speaker": ("ge2e",),
    "speaker-unseen": ("ge2e",),
    "italian-word": (),
}


def _trained_candidates(task: str, modality: Modality) -> dict[str, tuple[Scorer, str]]:
    """Name -> (scorer, the input its encoder takes)."""
    presets = PRESETS[modality]
    configs = {PRODUCTION: (ENCODERS[modality], presets["default"])}
    if modality is Modality.AUDIO:
        configs["quick"] = (ENCODERS[modality], presets["quick"])
    configs |= {name: BASELINES[name] for name in BASELINES_FOR[task]}
    return {name: _scorer(*config) for name, config in configs.items()}


@cache
def _scorer(encoder: EncoderConfig, train: TrainConfig) -> tuple[Scorer, str]:
    """One scorer per config for the whole run, so tasks with the same training sides (faces
    cropped and framed) share its trained models."""
    return trained(encoder, epoch_bounded(train)), encoder.input


def _peer_candidates(task: str, modality: Modality, skipped: dict[str, str]) -> dict[str, Scorer]:
    """The peers that load for `task`; the others go to `skipped` with the reason.

    A peer is somebody else's release: when a new version of its library breaks it (OpenCV
    5.1 dropped the importer FaceNet's graph needs), the run records why and still scores
    twinstream's own candidates instead of losing them.
    """
    candidates = {}
    for name, load in PEERS.get(task, {}).items():
        try:
            embed_item = load()
        except ImportError as error:
            skipped[name] = f"not installed ({error}); `make bench` installs the bench extras"
            continue
        except Exception as error:
            skipped[name] = f"installed but failed to load: {error!r}"
            continue
        candidates[name] = pretrained(cached(demo_items(modality), embed_item))
    return candidates


def _target_rows(results: list[CandidateResult]) -> tuple[list[dict[str, Any]], str]:
    by_key = {(r.task, r.candidate): r for r in results}
    rows = []
    lines = [
        "| target | now (baseline) | production | target | met |",
        "|---|---|---|---|---|",
    ]

    def mean_and_std(candidate: str, target: Target) -> dict[str, float]:
        summary = by_key[(target.task, candidate)].summary[target.metric]
        if target.relative_to is None:
            return summary
        base = by_key[(target.relative_to, candidate)].summary[target.metric]
        return {"mean": summary["mean"] - base["mean"], "std": summary["std"]}

    for target in TARGETS:
        baseline = BASELINE_OF[target.task]
        now = mean_and_std(baseline, target)["mean"]
        measured = mean_and_std(PRODUCTION, target)
        met = target.met(measured["mean"])
        rows.append(
            {
                "target": target.title,
                "metric": target.metric,
                "baseline": baseline,
                "baseline_mean": now,
                "production_mean": measured["mean"],
                "production_std": measured["std"],
                "target_value": target.value,
                "better": target.better,
                "met": met,
            }
        )
        lines.append(
            f"| {target.title} | {100 * now:.1f} % ({baseline}) "
            f"| {100 * measured['mean']:.1f} ± {100 * measured['std']:.1f} % "
            f"| {target.better} {100 * target.value:g} % | {'yes' if met else 'no'} |"
        )
    return rows, "\n".join(lines) + "\n"


def run(results_dir: Path, progress: Callable[[str], None] = print) -> BenchReport:
    results: list[CandidateResult] = []
    skipped: dict[str, str] = {}
    tasks = []
    for task_name, make_task in TASKS.items():
        task = make_task()
        tasks.append(describe(task))
        candidates = _trained_candidates(task_name, task.modality)
        peers = _peer_candidates(task_name, task.modality, skipped)
        candidates |= {name: (scorer, None) for name, scorer in peers.items()}
        # The same folds decoded as each candidate's encoder takes them (peers read the
        # items' own bytes, so any decoding does).
        decoded = {None: task}
        for name, (scorer, input_name) in candidates.items():
            if input_name not in decoded:
                decoded[input_name] = make_task(input_name=input_name)
            results.append(evaluate(decoded[input_name], name, scorer, progress))
    curves_dir = results_dir / "quality"
    write_report(results, curves_dir, {"machine": machine(), "tasks": tasks})
    target_rows, target_table = _target_rows(results)
    skipped_lines = "".join(f"- {name} skipped: {why}\n" for name, why in skipped.items())
    markdown = (
        "## quality\n\n"
        f"Unseen people (ORL, {FOLDS} folds of 30/10 people) and unseen words (asterisk speech, "
        f"{FOLDS} folds by word), seed {SEED}; mean ± std over folds; accuracy, FAR and FRR "
        "at the threshold each candidate calibrated on its training side; curves in "
        f"`{curves_dir}`.\n\n"
        f"{target_table}\n{markdown_table(results)}\n{skipped_lines}"
    )
    return BenchReport(
        name="quality",
        results={
            "targets": target_rows,
            "candidates": [r.to_dict() for r in results],
            "skipped": skipped,
            "tasks": tasks,
        },
        markdown=markdown,
    )
