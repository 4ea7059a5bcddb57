"""The evaluation harness: protocols are group-disjoint, metrics agree with hand counts, the
report is written, and `twinstream eval --model` scores a stored model on the real folds."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from pipeline.data.asterisk import common_words
from pipeline.embed.config import (
    BASELINES,
    ENCODERS,
    FROM_SCRATCH_FACE,
    PRESETS,
    EncoderConfig,
    TrainConfig,
)
from pipeline.embed.encoders import BookEncoder, ConvEncoder, build_encoder
from pipeline.embed.energy import EuclideanEnergy
from pipeline.embed.model import EmbeddingModel
from pipeline.evaluation.harness import CandidateResult, evaluate, pretrained
from pipeline.evaluation.protocols import (
    ITALIAN_VOICES,
    Task,
    describe,
    face_task,
    fewer_training_groups,
    group_folds,
    italian_word_task,
    speaker_task,
)
from pipeline.evaluation.report import markdown_table, write_report
from pipeline.evaluation.scoring import (
    MAX_SCORED_SAMPLES,
    score_embeddings,
    score_model,
    scored_subset,
)
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import ModelRecord
from pipeline.train.batches import RandomPairBatches
from pipeline.train.metrics import one_shot_accuracy, roc_points, tar_at_far
from pipeline.train.sample import Sample
from pipeline.train.trainer import train_model
from schemas.items import Modality


def _groups(samples) -> set[str]:
    return {s.group for s in samples}


# --- protocols on the real data sets --------------------------------------------------------


def test_face_folds_test_ten_unseen_people_each_and_everyone_once():
    task = face_task()
    assert len(task.folds) == 4
    tested = []
    for fold in task.folds:
        assert not _groups(fold.train) & _groups(fold.test)
        assert {s.label for s in fold.train}.isdisjoint({s.label for s in fold.test})
        assert len(_groups(fold.test)) == 10 and len(_groups(fold.train)) == 30
        assert len(fold.test) == 100 and len(fold.train) == 300
        tested += _groups(fold.test)
    assert sorted(tested) == sorted(f"s{i}" for i in range(1, 41))
    # Seeded: the same folds every time.
    assert [_groups(f.test) for f in face_task().folds] == [_groups(f.test) for f in task.folds]


def test_a_learning_curve_trains_on_fewer_people_and_tests_on_the_same_unseen_ones():
    task = face_task()
    narrowed = fewer_training_groups(task, 15, seed=0)
    for fold, small in zip(task.folds, narrowed.folds, strict=True):
        assert small.test == fold.test
        assert len(_groups(small.train)) == 15 and _groups(small.train) < _groups(fold.train)
        # Whole people: all ten shots of each kept person, in the fold's order.
        assert small.train == [s for s in fold.train if s.group in _groups(small.train)]
    assert len({frozenset(_groups(f.train)) for f in narrowed.folds}) == 4
    # Seeded: the same people for the same seed, others for another.
    again = fewer_training_groups(task, 15, seed=0)
    assert [f.train for f in again.folds] == [f.train for f in narrowed.folds]
    other = fewer_training_groups(task, 15, seed=1)
    assert [_groups(f.train) for f in other.folds] != [_groups(f.train) for f in narrowed.folds]
    # All of them is the task itself.
    assert [f.train for f in fewer_training_groups(task, 30, seed=0).folds] == [
        f.train for f in task.folds
    ]
    for impossible in (1, 31):
        with pytest.raises(ValueError, match="30 training groups"):
            fewer_training_groups(task, impossible, seed=0)


def test_the_learning_curve_fit_recovers_a_power_law_and_where_it_reaches_a_target():
    from bench.learning_curve import DRAWS, PEOPLE, RUNS, report

    # Draws scatter around a power law; their mean is on it.
    def error(people: int, draw: int) -> float:
        return 0.8 * people**-0.6 * (1 + (0.1 if draw else -0.1) * (people < 30))

    rows = [
        {"split": split, "seed": seed, "people": people, "draw": draw}
        | {"eer": error(people, draw), "one_shot_accuracy": 1 - error(people, draw) / 2}
        for split, seed in RUNS
        for people in PEOPLE
        for draw in range(DRAWS if people < 30 else 1)
    ]
    bench = report(rows)
    eer, one_shot = bench.results["fits"]["eer"], bench.results["fits"]["one_shot_accuracy"]
    assert eer["exponent"] == pytest.approx(-0.6) and one_shot["exponent"] == pytest.approx(-0.6)
    assert eer["people_needed_for_target"] == pytest.approx((0.003 / 0.8) ** (1 / -0.6))
    assert one_shot["people_needed_for_target"] == pytest.approx((0.01 / 0.8) ** (1 / -0.6))
    ratios = {r["eer_ratio_to_full"] for r in bench.results["runs"] if r["people"] == 30}
    assert ratios == {1.0}
    assert "| 15 | 14.2 / 92.9 (× 1.36); 17.3 / 91.3 (× 1.67) |" in bench.markdown


@pytest.fixture(scope="module")
def words() -> list[str]:
    """Every tenth common prompt: the protocols' rules hold on any subset, and decoding the
    whole speech set would dominate the test's time."""
    return common_words()[::10]


def test_speaker_folds_never_test_a_word_heard_in_training(words):
    task = speaker_task(words=words)
    tested = Counter()
    for fold in task.folds:
        assert not _groups(fold.train) & _groups(fold.test)
        # Identity is the speaker; every speaker is in both sides.
        assert {s.label for s in fold.test} == {s.label for s in fold.train}
        tested.update(_groups(fold.test))
    assert set(tested.values()) == {1}
    assert {s.label for s in task.folds[0].test} == {
        "allison",
        "june",
        "carlo",
        "menardi",
        "ivrvoiceru",
    }


def test_italian_word_task_pairs_the_two_italian_voices_and_splits_by_word(words):
    task = italian_word_task(words=words)
    for fold in task.folds:
        assert not _groups(fold.train) & _groups(fold.test)
        for side in (fold.train, fold.test):
            assert all(s.label == s.group for s in side)
            assert {s.id.split("/")[1] for s in side} == set(ITALIAN_VOICES)
            assert set(Counter(s.label for s in side).values()) == {2}
    # Batches of words × both voices, and each preset twice its epochs (the training side is
    # small); the report says so.
    for preset in PRESETS[Modality.AUDIO].values():
        trained_as = task.train_config(preset)
        assert trained_as.samples_per_identity == 2
        assert trained_as.epochs == 2 * preset.epochs
    about = describe(task)
    assert (about["train_overrides"], about["epochs_factor"]) == (task.train_overrides, 2)


def test_group_folds_need_enough_groups():
    samples = [Sample(f"i{n}", "a", f"g{n % 3}", np.zeros(1)) for n in range(6)]
    assert len(group_folds(samples, 3, seed=0)) == 3
    with pytest.raises(ValueError, match="4 folds"):
        group_folds(samples, 4, seed=0)


# --- metrics by hand ------------------------------------------------------------------------


def test_tar_at_far_by_hand():
    # impostors 0.2 0.5 0.6 0.7 0.8 0.9 1.0 1.1 1.2 1.3; genuine 0.1 0.3 0.55 0.9
    impostors = [0.2, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
    genuine = [0.1, 0.3, 0.55, 0.9]
    distances = np.array(genuine + impostors)
    same = np.array([True] * 4 + [False] * 10)
    # FAR <= 1 %: no impostor may pass, so the cut is below 0.2: one genuine of four.
    assert tar_at_far(distances, same, 0.01) == pytest.approx(0.25)
    # FAR <= 20 %: two impostors (0.2, 0.5) may pass; cut below 0.6: three genuine.
    assert tar_at_far(distances, same, 0.2) == pytest.approx(0.75)
    assert tar_at_far(distances, same, 1.0) == 1.0


def test_roc_points_by_hand():
    far, frr = roc_points(np.array([0.1, 0.2, 0.3, 0.4]), np.array([True, False, True, False]))
    np.testing.assert_allclose(far, [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(frr, [0.5, 0.5, 0.0, 0.0])


def test_one_shot_accuracy_by_hand():
    # a: 0 and 1 at x = 0 and 1; b: 2 and 3 at x = 3 and 1.4.
    embeddings = np.array([[0.0], [1.0], [3.0], [1.4]])
    labels = np.array(["a", "a", "b", "b"])
    # Round 0 enrols 0 (a) and 2 (b): 1 -> a right, 3 -> a (1.4 vs 1.6) wrong.
    # Round 1 enrols 1 (a) and 3 (b): 0 -> a right, 2 -> b right.
    assert one_shot_accuracy(embeddings, labels) == pytest.approx(3 / 4)
    # A singleton is neither enrolled nor queried; one identity alone is no identification.
    assert math.isnan(one_shot_accuracy(embeddings[:3], labels[:3]))


def _people(count: int, faces_each: int) -> list[Sample]:
    rng = np.random.default_rng(1)
    return [
        Sample(f"p{p}/{i}", f"p{p}", f"p{p}", rng.random((1, 112, 92), dtype=np.float32))
        for p in range(count)
        for i in range(faces_each)
    ]


def test_a_large_held_out_set_is_scored_on_a_bounded_repeatable_subset_that_keeps_pairs():
    """A grown stream's held-out share would otherwise need an n × n matrix of all its pairs."""
    few_faces_each, many_people = _people(300, 10), _people(1500, 3)

    subset = scored_subset(few_faces_each)
    assert Counter(s.label for s in subset) == {f"p{p}": 6 for p in range(300)}
    assert [s.id for s in scored_subset(few_faces_each)] == [s.id for s in subset]
    kept = scored_subset(many_people)
    assert len(kept) == MAX_SCORED_SAMPLES
    assert set(Counter(s.label for s in kept).values()) == {2}
    small = few_faces_each[:100]
    assert [s.id for s in scored_subset(small)] == [s.id for s in small]

    model = EmbeddingModel(build_encoder(FROM_SCRATCH_FACE), "face-test", 0.5)
    scores = score_model(model, many_people)
    assert scores.pairs == MAX_SCORED_SAMPLES * (MAX_SCORED_SAMPLES - 1) // 2
    assert scores.genuine_pairs == MAX_SCORED_SAMPLES // 2
    assert scores.metrics["identities"] == MAX_SCORED_SAMPLES // 2


def test_score_embeddings_reads_rates_at_a_given_threshold():
    embeddings = np.array([[0.0], [0.1], [1.0], [1.3]])
    labels = ["a", "a", "b", "b"]
    # pairs: (0,1) 0.1 same, (0,2) 1.0, (0,3) 1.3, (1,2) 0.9, (1,3) 1.2, (2,3) 0.3 same
    scores = score_embeddings(embeddings, labels, EuclideanEnergy(), threshold=0.2)
    assert scores.metrics["eer"] == 0.0 and scores.threshold == pytest.approx(0.6)
    assert scores.metrics["threshold"] == 0.2
    assert (scores.metrics["far"], scores.metrics["frr"]) == (0.0, 0.5)
    assert scores.metrics["accuracy"] == pytest.approx(5 / 6)
    assert scores.metrics["one_shot_accuracy"] == 1.0
    assert scores.metrics["tar_at_far_1pct"] == 1.0
    assert len(scores.distances) == scores.pairs == 6


# --- harness and report ---------------------------------------------------------------------


def _toy_task() -> Task:
    """Three identities as points on a line, two groups each, so any split separates them."""
    samples = [
        Sample(f"{label}/{n}", label, f"{label}{n % 2}", np.array([centre + 0.01 * n, 1.0]))
        for label, centre in (("a", 0.0), ("b", 5.0), ("c", 10.0), ("d", 15.0))
        for n in range(4)
    ]
    return Task("toy", Modality.FACE, "same point", "group", group_folds(samples, 2, seed=0))


def test_pretrained_candidate_is_scored_per_fold_and_reported(tmp_path):
    task = _toy_task()
    messages = []
    embedder = pretrained(lambda samples: np.stack([s.x for s in samples]))
    result = evaluate(task, "identity", embedder, messages.append)
    assert len(result.folds) == 2 and len(messages) == 2
    assert result.summary["eer"] == {"mean": 0.0, "std": 0.0}
    assert result.summary["one_shot_accuracy"]["mean"] == 1.0
    assert len(result.distances) == sum(f["pairs"] for f in result.folds)
    table = markdown_table([result])
    assert "| toy | identity | 2 | 0.0 ± 0.0 % |" in table
    paths = write_report([result], tmp_path, {"what": "toy"})
    assert sorted(p.name for p in paths) == ["eval.json", "eval.md", "toy-det.png", "toy-roc.png"]
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["what"] == "toy" and record["results"][0]["summary"]["eer"]["mean"] == 0.0
    assert (tmp_path / "toy-roc.png").read_bytes().startswith(b"\x89PNG")


# --- the book's network and recipe ----------------------------------------------------------


def test_book_encoder_is_the_chapter_two_network():
    encoder_config, train_config = BASELINES["book"]
    encoder = build_encoder(encoder_config)
    assert isinstance(encoder, BookEncoder)
    convs = [m for m in encoder.modules() if m.__class__.__name__ == "Conv2d"]
    assert [c.out_channels for c in convs] == [6, 12]
    # 56×46 -> conv 54×44 -> pool 27×22 -> conv 25×20 -> pool 12×10, 12 channels.
    assert encoder.head[0].in_features == 12 * 12 * 10
    out = encoder.eval()(torch.zeros(2, 1, 112, 92))
    assert tuple(out.shape) == (2, 50)
    assert (train_config.optimizer, train_config.epochs, train_config.pairs_per_batch) == (
        "rmsprop",
        13,
        128,
    )
    assert encoder_config.margin == 1.0


def test_configs_saved_before_the_architecture_field_still_load_as_conv():
    saved = FROM_SCRATCH_FACE.to_dict()
    del saved["architecture"]
    config = EncoderConfig.from_dict(saved)
    assert config.architecture == "conv"
    assert isinstance(build_encoder(config), ConvEncoder)
    with pytest.raises(ValueError, match="architecture"):
        EncoderConfig(Modality.FACE, architecture="resnet")
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")


def test_random_pair_batches_are_half_genuine_and_cover_the_pairs_each_epoch():
    labels = [f"p{i // 4}" for i in range(40)]
    batches = RandomPairBatches(labels, n_pairs=100, pairs_per_batch=32, seed=0)
    epoch = list(batches)
    assert len(epoch) == len(batches) == 4
    assert sum(len(b.first) for b in epoch) == 100
    same = np.concatenate([b.same for b in epoch])
    assert same.sum() == 50
    for batch in epoch:
        a, b = batch.indices[batch.first], batch.indices[batch.second]
        np.testing.assert_array_equal(np.array(labels)[a] == np.array(labels)[b], batch.same)
        assert (a != b).all()


# --- `twinstream eval --model` ----------------------------------------------------------------


def test_eval_cli_scores_a_stored_model_on_every_face_fold(tmp_path):
    settings = Settings(state_dir=tmp_path / "state")
    people = {f"s{i}" for i in range(1, 11)}
    fold = face_task().folds[0]
    samples = [s for s in fold.train + fold.test if s.label in people]
    config = dataclasses.replace(PRESETS[Modality.FACE]["quick"], epochs=1)
    result = train_model(samples, ENCODERS[Modality.FACE], config, version="face-v1")
    path = settings.models_dir / "face-v1.pt"
    digest = result.model.save(path)
    store = MetadataStore.from_settings(settings)
    store.register_model(
        ModelRecord(
            version="face-v1",
            modality=Modality.FACE,
            config={},
            metrics=result.metrics,
            threshold=result.threshold,
            energy="euclidean",
            artifact_path=str(path),
            artifact_sha256=digest,
            active=True,
        )
    )
    out = tmp_path / "report"
    env = os.environ | {"TWINSTREAM_STATE_DIR": str(settings.state_dir)}
    command = [sys.executable, "-m", "services.cli", "eval", "--modality", "face"]
    run = subprocess.run(
        [*command, "--model", "face-v1", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "| face | face-v1 | 4 |" in run.stdout
    record = json.loads((out / "eval.json").read_text())
    assert record["candidate"]["may_overlap"] is True
    folds = record["results"][0]["folds"]
    assert [f["test_items"] for f in folds] == [100] * 4
    assert all(f["threshold"] == pytest.approx(result.threshold) for f in folds)
    assert (out / "face-roc.png").exists() and (out / "face-det.png").exists()

    missing = subprocess.run(
        [*command, "--model", "face-v9"], env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "face-v9" in missing.stderr


# --- the quality benchmark's target table ---------------------------------------------------


def test_quality_targets_compare_production_with_the_baseline_of_each_task():
    from bench.quality import PRODUCTION, TARGETS, _target_rows

    def result(task: str, candidate: str, eer: float, one_shot: float) -> CandidateResult:
        summary = {
            "eer": {"mean": eer, "std": 0.0},
            "one_shot_accuracy": {"mean": one_shot, "std": 0.0},
        }
        return CandidateResult(candidate, task, [], summary, np.empty(0), np.empty(0))

    results = [
        result("face", "from-scratch", 0.06, 0.95),
        result("face", PRODUCTION, 0.002, 0.999),
        result("face-framed", "from-scratch", 0.3, 0.20),
        result("face-framed", PRODUCTION, 0.004, 0.98),
        result("speaker-unseen", "quick", 0.21, 0.38),
        result("speaker-unseen", PRODUCTION, 0.04, 0.90),
        result("speaker", "quick", 0.07, 0.9),
        result("speaker", PRODUCTION, 0.005, 1.0),
        result("italian-word", "quick", 0.18, 0.5),
        result("italian-word", PRODUCTION, 0.09, 0.6),
    ]
    rows, table = _target_rows(results)
    assert [row["met"] for row in rows] == [True, True, False, True, False, True, False]
    # The framed row is the framed faces' 1-shot minus the cropped ones', per candidate.
    assert rows[2]["baseline_mean"] == pytest.approx(0.20 - 0.95)
    assert rows[2]["production_mean"] == pytest.approx(0.98 - 0.999)
    assert [row["baseline_mean"] for i, row in enumerate(rows) if i != 2] == [
        0.06,
        0.95,
        0.21,
        0.38,
        0.07,
        0.18,
    ]
    assert len(rows) == len(TARGETS) and table.count("| no |") == 3


def test_unseen_speaker_folds_never_test_a_voice_heard_in_training(monkeypatch):
    """Speakers from several packages (the demo voices and the two other asterisk voices
    `make test` installs), a few clips each: every voice is tested once, never trained on."""
    from pipeline.data import speakers
    from pipeline.evaluation import protocols

    per_speaker: Counter[str] = Counter()
    subset = []
    for item in speakers.iter_speakers():
        if per_speaker[item.label] < 6:
            per_speaker[item.label] += 1
            subset.append(item)
    monkeypatch.setattr(protocols, "iter_speakers", lambda: iter(subset))
    task = protocols.unseen_speaker_task(input_name="audio-mel")
    assert {"armelle", "july-es-co", "allison", "carlo"} <= set(per_speaker)
    tested = Counter()
    for fold in task.folds:
        assert not {s.label for s in fold.train} & {s.label for s in fold.test}
        assert _groups(fold.test) == {s.label for s in fold.test}
        tested.update({s.label for s in fold.test})
    assert tested == Counter(set(per_speaker))
    assert sum(len(f.test) for f in task.folds) == len(subset)
