"""One candidate, trained and judged: the part of a retraining run that needs compute.

It runs as a Ray task (on a GPU when the cluster has one) and reports progress through the
run's row in the store, so `GET /v1/retrain/{run_id}` and the CLI see it wherever it runs.
"""

from dataclasses import dataclass
from typing import Any

from pipeline.embed.model import EmbeddingModel
from pipeline.evaluation.scoring import Scores, score_model
from pipeline.retrain.feedback import read_pairs
from pipeline.retrain.gate import Decision, judge
from pipeline.retrain.progress import RunProgress
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import ModelRecord, RunStatus
from pipeline.train.job import stored_samples, train_and_register
from schemas.items import Modality
from schemas.runs import RunPhase


@dataclass(frozen=True)
class Candidate:
    record: ModelRecord
    decision: Decision


def _summary(scores: Scores) -> dict[str, Any]:
    return scores.metrics | {"pairs": scores.pairs, "genuine_pairs": scores.genuine_pairs}


def train_candidate(
    settings: Settings, modality: Modality, run_id: str, preset: str | None
) -> Candidate:
    store = MetadataStore.from_settings(settings)
    progress = RunProgress(store, run_id)
    progress.at(RunPhase.COLLECTING, status=RunStatus.RUNNING)
    samples = stored_samples(settings, store, modality)
    feedback, skipped = read_pairs(settings, modality)
    position = {s.id: i for i, s in enumerate(samples)}
    pairs = [
        (position[p.a], position[p.b], p.same)
        for p in feedback
        if p.a in position and p.b in position
    ]
    counts = {
        "items": len(samples),
        "identities": len({s.label for s in samples}),
        "feedback_pairs": len(feedback),
        "feedback_pairs_used": len(pairs),
        "feedback_messages_skipped": skipped,
    }
    progress.at(RunPhase.TRAINING, data_counts=counts)
    training = progress.through(RunPhase.TRAINING)
    run = train_and_register(
        settings,
        store,
        modality,
        samples,
        activate=False,
        progress=lambda fraction, _message: training(fraction),
        pairs=pairs,
        preset=preset,
    )
    record = run.record
    progress.at(RunPhase.EVALUATING, candidate_version=record.version)
    # Both models are scored on the identities the candidate was not trained on.
    held_out = run.result.held_out
    artifacts = ModelArtifacts(store, settings.models_dir)
    candidate = score_model(EmbeddingModel.from_record(record, artifacts), held_out)
    active_record = store.active_model(modality)
    active = (
        None
        if active_record is None
        else score_model(EmbeddingModel.from_record(active_record, artifacts), held_out)
    )
    decision = judge(candidate, active, settings.retrain_min_improvement)
    progress.at(
        RunPhase.EVALUATING,
        1.0,
        metrics={
            "candidate": _summary(candidate),
            "active": None if active is None else _summary(active),
            "active_version": None if active_record is None else active_record.version,
            "decision": decision.reason,
        },
    )
    return Candidate(record, decision)
