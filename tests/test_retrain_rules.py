"""The rules of retraining that need no running stack: schedules, the promotion gate and
what TRAIN_OVERRIDES do to a preset."""

from dataclasses import replace

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pipeline.embed.config import PRESETS, preset_config
from pipeline.evaluation.scoring import Scores
from pipeline.retrain.gate import judge
from pipeline.retrain.progress import RunProgress
from pipeline.retrain.schedule import parse_schedule
from pipeline.store.metadata import MetadataStore
from schemas.items import Modality
from schemas.runs import RunPhase, RunStatus, RunTrigger, TrainPreset


def scores(eer: float) -> Scores:
    return Scores(metrics={"eer": eer}, threshold=0.5, pairs=10, genuine_pairs=2)


@pytest.mark.parametrize(
    ("text", "seconds"), [("every 6h", 6 * 3600), ("every 30m", 1800), ("EVERY 1d", 86400)]
)
def test_intervals(text, seconds):
    trigger = parse_schedule(text)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval.total_seconds() == seconds


def test_cron_and_off():
    assert isinstance(parse_schedule("0 3 * * *"), CronTrigger)
    assert parse_schedule("off") is None and parse_schedule(" OFF ") is None


@pytest.mark.parametrize("text", ["every 6 weeks", "sometimes", "61 * * * *", "every 0h"])
def test_unreadable_schedules_are_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match=r"retrain|at least"):
        parse_schedule(text)


def test_the_gate_promotes_only_a_better_candidate():
    assert judge(scores(0.05), scores(0.10), 0.0).promote
    assert not judge(scores(0.10), scores(0.10), 0.0).promote
    assert not judge(scores(0.12), scores(0.10), 0.0).promote
    assert not judge(scores(0.09), scores(0.10), 0.02).promote
    assert judge(scores(0.05), None, 0.0).promote


def test_train_overrides_replace_the_presets_fields_and_nothing_else():
    quick = PRESETS[Modality.FACE][TrainPreset.QUICK]
    config = preset_config(Modality.FACE, TrainPreset.QUICK, {"epochs": 1, "max_seconds": 1e-3})
    assert (config.epochs, config.max_seconds) == (1, 1e-3)
    assert config == replace(quick, epochs=1, max_seconds=1e-3)
    with pytest.raises(TypeError, match="no_such_field"):
        preset_config(Modality.FACE, TrainPreset.QUICK, {"no_such_field": 1})
    with pytest.raises(ValueError, match="positive"):
        preset_config(Modality.FACE, TrainPreset.QUICK, {"epochs": 0})


def test_a_runs_progress_moves_through_each_phases_span_and_stays_where_it_failed(tmp_path):
    store = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    run = store.create_run(Modality.FACE, RunTrigger.API)
    progress = RunProgress(store, run.run_id)
    progress.at(RunPhase.COLLECTING, status=RunStatus.RUNNING)
    assert (store.get_run(run.run_id).phase, store.get_run(run.run_id).progress) == (
        "collecting",
        0.01,
    )
    progress.through(RunPhase.TRAINING)(0.5)
    assert store.get_run(run.run_id).progress == pytest.approx(0.4)
    progress.at(RunPhase.RE_EMBEDDING, 1.0)
    assert store.get_run(run.run_id).progress == pytest.approx(0.99)
    progress.at(RunPhase.FAILED, status=RunStatus.FAILED, error="boom")
    failed = store.get_run(run.run_id)
    assert (failed.phase, failed.progress, failed.status) == ("failed", 0.99, RunStatus.FAILED)
