"""Runs the benchmarks one after another (they would only disturb each other in parallel)."""

import importlib
from collections.abc import Sequence
from pathlib import Path

from bench.report import Benchmark, write_report, write_summary

# name -> "module:function"; imported only when run, so one benchmark's extras
# never stop another from running.
BENCHMARKS: dict[str, str] = {
    "ingest": "bench.ingest:run",
    "retrain": "bench.retrain:run",
    "serve": "bench.serve:run",
    "quality": "bench.quality:run",
    "learning-curve": "bench.learning_curve:run",
    "gpu": "bench.gpu:run",
    "index-scale": "bench.index_scale:run",
    "scale": "bench.scale:run",
}

RESULTS_DIR = Path("bench/results")


def _load(target: str) -> Benchmark:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run_benchmarks(names: Sequence[str] = (), results_dir: Path = RESULTS_DIR) -> list[Path]:
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise ValueError(f"unknown benchmarks {sorted(unknown)}; known: {sorted(BENCHMARKS)}")
    written = []
    summary = results_dir / "SUMMARY.md"
    for name in names or list(BENCHMARKS):
        written.append(write_report(_load(BENCHMARKS[name])(results_dir), results_dir))
        # After each one, so a run cut short still leaves a summary of what it measured.
        summary = write_summary(list(BENCHMARKS), results_dir)
    return [*written, summary]
