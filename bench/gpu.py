"""The GPU against the CPU of the same machine, in one run: encoder throughput at the ingest
batch and at one query, and a training epoch of the production preset.

Inputs are random arrays of each modality's shape (speed does not depend on content), so it
needs no data set; training uses the ORL faces. Without CUDA it reports that and measures
nothing.
"""

import copy
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.encoder_rate import embed_rate
from bench.report import BenchReport
from pipeline.data.orl import iter_orl
from pipeline.embed.config import ENCODERS, PRESETS
from pipeline.embed.encoders import build_encoder
from pipeline.embed.model import EmbeddingModel
from pipeline.inputs import INPUTS
from pipeline.train.job import item_samples
from pipeline.train.trainer import train_model
from schemas.items import Modality

ITEMS = 4096
# The ingest actor's micro-batch (INGEST_BATCH_SIZE) and one query.
BATCHES = (256, 1)
QUERIES = 200


def _items_per_s(model: EmbeddingModel, inputs: np.ndarray, batch: int) -> float:
    count = len(inputs) if batch > 1 else QUERIES
    return embed_rate(model, [inputs[start : start + batch] for start in range(0, count, batch)])


def _encoders() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for modality in Modality:
        encoder = build_encoder(ENCODERS[modality])  # one set of weights for both devices
        shape = (ITEMS, *INPUTS[ENCODERS[modality].input].shape)
        inputs = rng.standard_normal(shape, dtype=np.float32)
        models = {
            device: EmbeddingModel(copy.deepcopy(encoder), "bench", 0.5, device=device)
            for device in ("cpu", "cuda")
        }
        for batch in BATCHES:
            speed = {device: _items_per_s(m, inputs, batch) for device, m in models.items()}
            results[f"{modality.value}_batch_{batch}"] = {
                "cpu_items_per_s": speed["cpu"],
                "cuda_items_per_s": speed["cuda"],
                "cuda_vs_cpu": speed["cuda"] / speed["cpu"],
            }
    return results


def _training() -> dict[str, Any]:
    """One epoch of the production face preset on each device, then the whole preset on CUDA."""
    faces = item_samples(Modality.FACE, iter_orl())
    preset = PRESETS[Modality.FACE]["default"]
    epoch = dataclasses.replace(preset, epochs=1)
    seconds: dict[str, float] = {}
    for device in ("cpu", "cuda"):
        started = time.perf_counter()
        train_model(faces, ENCODERS[Modality.FACE], epoch, device=device)
        seconds[device] = time.perf_counter() - started
    started = time.perf_counter()
    full = train_model(faces, ENCODERS[Modality.FACE], preset, device="cuda")
    return {
        "epoch_cpu_s": seconds["cpu"],
        "epoch_cuda_s": seconds["cuda"],
        "epoch_cpu_vs_cuda": seconds["cpu"] / seconds["cuda"],
        "preset_epochs": preset.epochs,
        "preset_cuda_s": time.perf_counter() - started,
        "preset_cuda_heldout_eer": full.metrics["eer"],
    }


def run(results_dir: Path) -> BenchReport:
    del results_dir  # the runner writes the report
    if not torch.cuda.is_available():
        return BenchReport("gpu", {"cuda": None}, "## GPU\n\nNo CUDA device: not measured.")
    results: dict[str, Any] = {
        "cuda": torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "encoders": _encoders(),
        "training": _training(),
    }
    lines = [
        f"## GPU ({results['cuda']}) against {results['cpu_threads']} CPU threads",
        "",
        "| encoder, batch | CPU items/s | CUDA items/s | CUDA / CPU |",
        "|---|---|---|---|",
    ]
    for name, r in results["encoders"].items():
        lines.append(
            f"| {name.replace('_batch_', ', ')} | {r['cpu_items_per_s']:.0f} "
            f"| {r['cuda_items_per_s']:.0f} | {r['cuda_vs_cpu']:.1f} |"
        )
    t = results["training"]
    lines += [
        "",
        f"Face training, one epoch of the production preset: CPU {t['epoch_cpu_s']:.1f} s, "
        f"CUDA {t['epoch_cuda_s']:.1f} s ({t['epoch_cpu_vs_cuda']:.1f}×); the whole preset "
        f"({t['preset_epochs']} epochs) on CUDA {t['preset_cuda_s']:.0f} s, held-out EER "
        f"{100 * t['preset_cuda_heldout_eer']:.1f} %.",
    ]
    return BenchReport("gpu", results, "\n".join(lines))
