"""Retraining on the service: wall time per modality with the production preset, and how fast
a switch re-embeds the retained items compared with the bare encoder in the same run.

The stack starts from quick-preset models on all demo data; each modality is then retrained
through the coordinator exactly as `POST /v1/retrain` does it, and switched back and forth by
activation so a re-embed is timed whatever the gate decides.
"""

import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

from bench.report import BenchReport
from bench.stack import bench_stack
from pipeline.data.demo import demo_items
from pipeline.embed.model import EmbeddingModel
from pipeline.inputs import decode
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import RunTrigger
from schemas.items import Modality

POLL_S = 1.0


def _wait(store: MetadataStore, run_id: str) -> dict[str, Any]:
    while True:
        run = store.get_run(run_id)
        if run is not None and run.status.finished:
            return {
                "status": run.status.value,
                "promoted": run.promoted,
                "wall_s": (run.finished_at - run.created_at).total_seconds(),
                "candidate_version": run.candidate_version,
                "candidate_eer": run.metrics.get("candidate", {}).get("eer"),
                "active_eer": (run.metrics.get("active") or {}).get("eer"),
                "data_counts": run.data_counts,
                "error": run.error,
            }
        time.sleep(POLL_S)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _encoder_items_per_s(model: EmbeddingModel, inputs: np.ndarray) -> float:
    started = time.perf_counter()
    model.embed(inputs)
    return len(inputs) / (time.perf_counter() - started)


def run(results_dir: Path) -> BenchReport:
    items = {m: list(demo_items(m)) for m in Modality}
    results: dict[str, Any] = {}
    with bench_stack(items) as stack:
        store = MetadataStore.from_settings(stack.settings)
        for modality in Modality:
            first = store.active_model(modality)
            assert first is not None
            run_id = ray.get(stack.retrainer.start.remote(modality, RunTrigger.SCHEDULE))
            retrain = _wait(store, run_id)
            other = first.version
            if not retrain["promoted"] and retrain["candidate_version"]:
                other = retrain["candidate_version"]
            started = time.perf_counter()
            ray.get(stack.retrainer.activate.remote(other))
            switch_s = time.perf_counter() - started
            record = store.get_model(other)
            assert record is not None
            model = EmbeddingModel.from_record(
                record, ModelArtifacts(store, stack.settings.models_dir)
            )
            inputs = np.stack([decode(model.config.input, i.read_bytes()) for i in items[modality]])
            encoder = _encoder_items_per_s(model, inputs)
            reembed = len(items[modality]) / switch_s
            results[modality.value] = {
                "retrain": retrain,
                "items": len(items[modality]),
                "switch_s": switch_s,
                "reembed_items_per_s": reembed,
                "encoder_items_per_s": encoder,
                "reembed_vs_encoder": reembed / encoder,
            }
    lines = [
        "## Retraining (production preset, through the coordinator)",
        "",
        "| modality | retrain wall s | promoted | candidate EER | active EER "
        "| switch s (items) | re-embed items/s | encoder items/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        t = r["retrain"]
        lines.append(
            f"| {name} | {t['wall_s']:.0f} | {t['promoted']} | {_pct(t['candidate_eer'])} "
            f"| {_pct(t['active_eer'])} | {r['switch_s']:.1f} ({r['items']}) "
            f"| {r['reembed_items_per_s']:.0f} | {r['encoder_items_per_s']:.0f} "
            f"| {r['reembed_vs_encoder']:.2f} |"
        )
    return BenchReport("retrain", results, "\n".join(lines))
