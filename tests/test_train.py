"""Training on real demo data: splits, batches, metrics, reproducibility and the model artifact."""

import dataclasses
import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import count
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.data.asterisk import common_words, iter_asterisk
from pipeline.data.orl import iter_orl
from pipeline.embed.config import (
    BASELINES,
    ENCODERS,
    FROM_SCRATCH_FACE,
    PRESETS,
    EncoderConfig,
    TrainConfig,
)
from pipeline.embed.dlib_resnet import dlib_resnet_source, dlib_resnet_weights
from pipeline.embed.encoders import build_encoder
from pipeline.embed.energy import CosineEnergy, EuclideanEnergy
from pipeline.embed.model import ArtifactError, EmbeddingModel
from pipeline.embed.speaker_lstm import SpeakerLSTM, read_resemblyzer_weights
from pipeline.embed.whitening import within_class_whitening
from pipeline.inputs import AUDIO_MEL, FACE_CHIP, FACE_FRAME, INPUTS, decode
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord
from pipeline.train import trainer
from pipeline.train.batches import PairBatches, in_batch_pairs
from pipeline.train.job import stored_samples
from pipeline.train.metrics import (
    accuracy_at,
    eer,
    far_frr,
    nearest_neighbour_accuracy,
    pair_distances,
    roc_auc,
)
from pipeline.train.sample import Sample
from pipeline.train.split import split_by_group
from pipeline.train.trainer import AUGMENTATIONS, ERASE_FRACTION, train_model
from schemas.items import Modality

FACE_PEOPLE = 20
WHITENED_PEOPLE = 8
AUDIO_WORDS = 30


def _input(modality: Modality) -> str:
    return ENCODERS[modality].input


def _shape(modality: Modality) -> tuple[int, ...]:
    return INPUTS[_input(modality)].shape


def _samples(items) -> list[Sample]:
    return [
        Sample(item.id, item.label, item.group, decode(_input(item.modality), item.read_bytes()))
        for item in items
    ]


@pytest.fixture(scope="module")
def faces() -> list[Sample]:
    people = {f"s{i}" for i in range(1, FACE_PEOPLE + 1)}
    return _samples(item for item in iter_orl() if item.label in people)


@pytest.fixture(scope="module")
def face_config() -> TrainConfig:
    # The wall-clock budget is lifted so a busy machine cannot cut a run short and break
    # the reproducibility check; the budget itself is tested separately.
    return dataclasses.replace(PRESETS[Modality.FACE]["quick"], max_seconds=600.0)


@pytest.fixture(scope="module")
def face_run(faces, face_config):
    return train_model(faces, ENCODERS[Modality.FACE], face_config)


# --- metrics on hand-computed cases ---------------------------------------------------------


def test_eer_and_threshold_by_hand():
    # genuine 0.1 0.2 0.3, impostor 0.25 0.4 0.5: at E <= 0.25 one genuine pair is rejected
    # and one impostor accepted (FAR = FRR = 1/3); the threshold sits midway to 0.3.
    distances = np.array([0.1, 0.2, 0.3, 0.25, 0.4, 0.5])
    same = np.array([True, True, True, False, False, False])
    rate, threshold = eer(distances, same)
    assert rate == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.275)
    assert far_frr(distances, same, threshold) == pytest.approx((1 / 3, 1 / 3))
    assert accuracy_at(distances, same, threshold) == pytest.approx(4 / 6)
    assert far_frr(distances, same, 0.35) == pytest.approx((1 / 3, 0.0))
    assert accuracy_at(distances, same, 0.35) == pytest.approx(5 / 6)


def test_eer_of_separable_distances_is_zero_with_threshold_in_the_gap():
    rate, threshold = eer(np.array([0.1, 0.2, 0.6, 0.8]), np.array([True, True, False, False]))
    assert rate == 0.0
    assert threshold == pytest.approx(0.4)


def test_roc_auc_by_hand_with_ties():
    # Of the four (genuine, impostor) pairs, three are ordered right and one is a tie.
    assert roc_auc(np.array([3.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.875)
    assert roc_auc(np.array([1.0]), np.array([2.0, 3.0])) == 0.0


def test_pair_distances_and_nearest_neighbour_by_hand():
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.8, 0.6]])
    labels = np.array(["a", "b", "b", "a"])
    d_euclid, same = pair_distances(embeddings, labels, EuclideanEnergy())
    # pairs in order (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    np.testing.assert_array_equal(same, [False, False, True, True, False, False])
    expected = [np.sqrt(2), 2.0, np.sqrt(0.4), np.sqrt(2), np.sqrt(0.8), np.sqrt(3.6)]
    np.testing.assert_allclose(d_euclid, expected, atol=1e-9)
    d_cos, _ = pair_distances(embeddings, labels, CosineEnergy())
    np.testing.assert_allclose(d_cos, [1.0, 2.0, 0.2, 1.0, 0.4, 1.8], atol=1e-9)
    # 0 -> 3 (a, right), 1 -> 3 (wrong), 2 -> 1 (right), 3 -> 0 (right)
    assert nearest_neighbour_accuracy(embeddings, labels) == pytest.approx(0.75)


# --- split and batches ----------------------------------------------------------------------


def test_split_holds_out_whole_groups_deterministically(faces):
    train, held = split_by_group(faces, 0.2, seed=3)
    train_groups, held_groups = {s.group for s in train}, {s.group for s in held}
    assert not train_groups & held_groups
    assert len(held_groups) == round(0.2 * FACE_PEOPLE)
    assert len(train) + len(held) == len(faces)
    assert all(Counter(s.group for s in held)[g] == 10 for g in held_groups)
    assert split_by_group(list(reversed(faces)), 0.2, seed=3)[1][0].group in held_groups
    assert {s.group for s in split_by_group(faces, 0.2, seed=3)[1]} == held_groups
    assert any(
        {s.group for s in split_by_group(faces, 0.2, seed=s)[1]} != held_groups for s in range(5)
    )


def test_in_batch_pairs_label_every_pair():
    first, second, same = in_batch_pairs(np.array(["a", "b", "a"]))
    assert list(zip(first, second, same, strict=True)) == [
        (0, 1, False),
        (0, 2, True),
        (1, 2, False),
    ]


def test_pair_batches_sample_p_by_k_and_fold_in_explicit_pairs():
    labels = [f"p{i // 5}" for i in range(50)]  # ten identities, five samples each
    explicit = [(0, 7, False), (3, 4, True), (10, 49, True)]
    batches = PairBatches(
        labels, identities_per_batch=4, samples_per_identity=3, seed=0, pairs=explicit
    )
    epoch = list(batches)
    assert len(epoch) == len(batches) == 50 // 12
    seen = []
    for batch in epoch:
        n_explicit = (len(batch.indices) - 12) // 2
        identity = np.asarray(labels)[batch.indices[:12]]
        assert sorted(Counter(identity).values()) == [3, 3, 3, 3]
        in_batch = len(batch.first) - n_explicit
        np.testing.assert_array_equal(
            batch.same[:in_batch],
            identity[batch.first[:in_batch]] == identity[batch.second[:in_batch]],
        )
        for pos_a, pos_b, same in zip(
            batch.first[in_batch:], batch.second[in_batch:], batch.same[in_batch:], strict=True
        ):
            seen.append((int(batch.indices[pos_a]), int(batch.indices[pos_b]), bool(same)))
    assert sorted(seen) == sorted(explicit)
    with pytest.raises(IndexError):
        PairBatches(labels, 4, 3, seed=0, pairs=[(0, 50, True)])


# --- training on real faces -----------------------------------------------------------------


def test_quick_face_training_beats_chance_on_unseen_people(face_run, face_config):
    metrics, counts = face_run.metrics, face_run.counts
    assert counts["held_out_groups"] == round(face_config.held_out_fraction * FACE_PEOPLE)
    assert counts["train_groups"] + counts["held_out_groups"] == FACE_PEOPLE
    assert counts["held_out_samples"] == 10 * counts["held_out_groups"]
    assert metrics["eer"] < 0.35
    assert metrics["auc"] > 0.75
    assert metrics["genuine_mean"] < face_run.threshold < metrics["impostor_mean"]
    assert face_run.model.threshold == face_run.threshold
    assert not metrics["stopped_early"]


def test_same_seed_reproduces_the_metrics(face_run, faces, face_config):
    again = train_model(faces, ENCODERS[Modality.FACE], face_config)
    volatile = {"train_seconds"}
    assert {k: v for k, v in again.metrics.items() if k not in volatile} == {
        k: v for k, v in face_run.metrics.items() if k not in volatile
    }
    batch = np.stack([s.x for s in faces[:5]])
    np.testing.assert_array_equal(again.model.embed(batch), face_run.model.embed(batch))


def test_time_budget_stops_training_early(faces):
    config = dataclasses.replace(PRESETS[Modality.FACE]["quick"], max_seconds=0.01)
    progress = []
    result = train_model(
        faces, ENCODERS[Modality.FACE], config, progress=lambda f, m: progress.append(f)
    )
    assert result.metrics["stopped_early"]
    assert result.metrics["epochs"] < config.epochs
    assert progress[-1] == 1.0 and progress == sorted(progress)


def test_a_run_too_long_for_its_budget_plans_fewer_epochs_and_finishes_its_schedule(
    faces, monkeypatch
):
    """A grown stream at a scheduled retrain: cut off by the clock, a run would end at its
    peak learning rate. A clock that ticks 50 ms per reading makes the first epoch's pace
    (and so the plan) the same on every machine."""
    ticks = count()
    monkeypatch.setattr(trainer, "time", SimpleNamespace(monotonic=lambda: 0.05 * next(ticks)))
    config = dataclasses.replace(PRESETS[Modality.FACE]["quick"], epochs=10_000, max_seconds=3.0)

    metrics = train_model(faces, ENCODERS[Modality.FACE], config).metrics

    assert 1 < metrics["epochs_planned"] < config.epochs
    assert metrics["epochs"] == metrics["epochs_planned"]
    assert not metrics["stopped_early"]
    assert metrics["final_lr"] < config.lr / 100  # warm-up starts at lr / 25


def test_explicit_pairs_train_only_within_the_training_split(faces):
    config = dataclasses.replace(PRESETS[Modality.FACE]["quick"], epochs=1, max_seconds=600.0)
    train, held = split_by_group(faces, config.held_out_fraction, config.seed)
    index = {s.id: i for i, s in enumerate(faces)}
    pairs = [
        (index[train[0].id], index[train[1].id], True),
        (index[train[0].id], index[train[-1].id], False),
        (index[train[0].id], index[held[0].id], False),
    ]
    result = train_model(faces, ENCODERS[Modality.FACE], config, pairs=pairs)
    assert result.counts["explicit_pairs_used"] == 2
    assert result.counts["explicit_pairs_dropped"] == 1


def test_cosine_energy_is_trained_and_calibrated_in_its_own_units(faces):
    config = dataclasses.replace(PRESETS[Modality.FACE]["quick"], epochs=2, max_seconds=600.0)
    encoder = dataclasses.replace(ENCODERS[Modality.FACE], energy="cosine", margin=0.5)
    result = train_model(faces, encoder, config)
    assert isinstance(result.model.energy, CosineEnergy)
    assert 0.0 < result.threshold < 2.0
    assert result.metrics["genuine_mean"] < result.metrics["impostor_mean"]


# --- the model artifact ---------------------------------------------------------------------


def test_artifact_round_trips_embeddings_exactly(face_run, faces, tmp_path):
    path = tmp_path / "models" / "face.pt"
    digest = face_run.model.save(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["face.pt"]

    loaded = EmbeddingModel.load(path, expected_sha256=digest, device=face_run.model.device)
    assert loaded.version == face_run.model.version
    assert loaded.threshold == face_run.threshold
    assert loaded.config == face_run.model.config
    assert isinstance(loaded.energy, EuclideanEnergy)
    batch = np.stack([s.x for s in faces[:70]])  # more than one chunk
    batch.flags.writeable = False  # as arrays arrive through Ray
    embeddings = loaded.embed(batch)
    assert embeddings.dtype == np.float32 and embeddings.shape == (70, loaded.embedding_dim)
    np.testing.assert_array_equal(embeddings, face_run.model.embed(batch))


def _trained_module_embeds(model: EmbeddingModel, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.encoder(torch.from_numpy(batch).to(model.device)).cpu().numpy()


# The inference form computes the same function up to float rounding; on CUDA, convolutions
# in TF32 round at about 1e-3 (tests/test_gpu.py bounds what that does to embeddings).
FOLDED_ATOL = 2e-3 if torch.cuda.is_available() else 1e-5


def test_the_inference_form_embeds_like_the_trained_module(face_run, faces):
    """Batch norm folded into the convolutions, pooling before ReLU, channels-last: the same
    function, so a model serves exactly what it was calibrated with."""
    batch = np.stack([s.x for s in faces[:32]])
    np.testing.assert_allclose(
        face_run.model.embed(batch), _trained_module_embeds(face_run.model, batch), atol=FOLDED_ATOL
    )
    mirrored = dataclasses.replace(face_run.model.config, mirror_tta=True)
    encoder = build_encoder(mirrored)
    encoder.load_state_dict(face_run.model.encoder.state_dict())
    model = EmbeddingModel(encoder, "mirrored", 0.5)
    np.testing.assert_allclose(
        model.embed(batch), _trained_module_embeds(model, batch), atol=FOLDED_ATOL
    )


def test_whitening_is_fitted_on_the_training_groups_and_saved_with_the_weights(
    faces, face_config, tmp_path
):
    # Eight people: the refit is the same map at any size, and training on all twenty took
    # four times as long.
    faces = [f for f in faces if int(f.label.removeprefix("s")) <= WHITENED_PEOPLE]
    config = dataclasses.replace(ENCODERS[Modality.FACE], whitening=0.1)
    run = train_model(faces, config, dataclasses.replace(face_config, epochs=2))
    weight = run.model.encoder.whitening_weight.cpu().numpy()
    bias = run.model.encoder.whitening_bias.cpu().numpy()
    assert not np.allclose(weight, np.eye(len(weight)), atol=0.05)

    # Refitted from the training groups' embeddings before whitening (with their augmented
    # views), it is the same map: the held-out groups that calibrate the threshold played no
    # part in it.
    train, _ = split_by_group(faces, face_config.held_out_fraction, face_config.seed)
    views = list(
        trainer.whitening_views(
            np.stack([s.x for s in train]), np.array([s.label for s in train]), face_config, config
        )
    )
    labels = np.concatenate([view_labels for _, view_labels in views])
    assert len(labels) == (1 + trainer.WHITENING_VIEWS) * len(train)
    plain = build_encoder(dataclasses.replace(config, whitening=0.0))
    state = run.model.encoder.state_dict()
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("whitening_")})
    model = EmbeddingModel(plain, "plain", 0.5, device=run.model.device)
    unwhitened = np.concatenate([model.embed(inputs) for inputs, _ in views])
    expected_weight, expected_bias = within_class_whitening(unwhitened, labels, 0.1)
    scale = np.abs(expected_weight).max()
    np.testing.assert_allclose(weight, expected_weight, rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(bias, expected_bias, rtol=1e-3, atol=1e-3 * scale)

    path = tmp_path / "whitened.pt"
    loaded = EmbeddingModel.load(path, run.model.save(path), device=run.model.device)
    batch = np.stack([s.x for s in faces[:16]])
    np.testing.assert_array_equal(loaded.embed(batch), run.model.embed(batch))
    np.testing.assert_allclose(np.linalg.norm(loaded.embed(batch), axis=1), 1.0, atol=1e-5)


def test_whitening_views_stay_within_their_bound(face_config):
    """A few hundred faces get every view; a larger training side fewer, within
    WHITENING_MAX_INPUTS; one past half of it none."""
    config = dataclasses.replace(ENCODERS[Modality.FACE], whitening=0.1)

    def fitted_on(n: int, cfg: TrainConfig = face_config) -> int:
        # Tiny images: the counts do not depend on their size, the augmentation's time does.
        x = np.zeros((n, 1, 8, 8), dtype=np.float32)
        views = list(trainer.whitening_views(x, np.arange(n) % 10, cfg, config))
        for inputs, labels in views:
            assert len(labels) == len(inputs)
            np.testing.assert_array_equal(labels, np.arange(n) % 10)
        return sum(len(inputs) for inputs, _ in views)

    assert trainer.WHITENING_MAX_INPUTS == 8192 and trainer.WHITENING_VIEWS == 4
    assert fitted_on(240) == 5 * 240
    assert fitted_on(2000) == 4 * 2000
    assert fitted_on(5000) == 5000
    assert fitted_on(240, dataclasses.replace(face_config, augment=False)) == 240


def test_head_grid_widens_only_the_head_and_old_artifacts_load_as_they_were():
    """Binning the last feature map changes one layer's shape, so an artifact saved before the
    grid existed (no key: one bin) or while it had only a time axis (`time_bins`) loads into
    the network it was."""
    saved_before = ENCODERS[Modality.AUDIO].to_dict()
    del saved_before["head_grid"], saved_before["whitening"]
    assert EncoderConfig.from_dict(saved_before).head_grid == (1, 1)
    assert EncoderConfig.from_dict(saved_before).whitening == 0.0
    assert EncoderConfig.from_dict(saved_before | {"time_bins": 4}).head_grid == (1, 4)
    round_trip = json.loads(json.dumps(ENCODERS[Modality.FACE].to_dict()))
    assert EncoderConfig.from_dict(round_trip) == ENCODERS[Modality.FACE]

    conv = {Modality.AUDIO: ENCODERS[Modality.AUDIO], Modality.FACE: FROM_SCRATCH_FACE}
    for modality, grid in ((Modality.AUDIO, (1, 4)), (Modality.FACE, (3, 2))):
        one, binned = (
            build_encoder(dataclasses.replace(conv[modality], head_grid=g)) for g in ((1, 1), grid)
        )
        shapes_one, shapes_binned = (
            {name: tuple(t.shape) for name, t in m.state_dict().items()} for m in (one, binned)
        )
        assert shapes_one.keys() == shapes_binned.keys()
        assert {n for n in shapes_one if shapes_one[n] != shapes_binned[n]} == {"head.3.weight"}
        assert (
            shapes_binned["head.3.weight"][1] == grid[0] * grid[1] * shapes_one["head.3.weight"][1]
        )

        shape = (8, *INPUTS[conv[modality].input].shape)
        batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        model = EmbeddingModel(binned.eval(), "binned", 0.5)
        np.testing.assert_allclose(
            model.embed(batch), _trained_module_embeds(model, batch), atol=FOLDED_ATOL
        )
    for bad in ((0, 4), (1, 2, 3)):
        with pytest.raises(ValueError, match="head_grid"):
            EncoderConfig(Modality.AUDIO, head_grid=bad)
    book, _ = BASELINES["book"]
    for conv_only in ({"head_grid": (1, 4)}, {"mirror_tta": True}):
        with pytest.raises(ValueError, match="conv architecture"):
            dataclasses.replace(book, **conv_only)
    with pytest.raises(ValueError, match="conv architecture"):
        dataclasses.replace(ENCODERS[Modality.FACE], head_grid=(3, 2))


def test_a_config_names_its_input_and_old_artifacts_keep_the_one_they_were_trained_on():
    """Models saved before inputs had names took ORL's whole frame or 8 kHz mel features;
    their configs load with exactly those, so they embed as they were calibrated."""
    for modality, legacy in ((Modality.FACE, FACE_FRAME), (Modality.AUDIO, AUDIO_MEL)):
        saved_before = ENCODERS[modality].to_dict()
        for key in ("input", "freeze_trunk", "pretrained_source", "pretrained_sha256"):
            del saved_before[key]
        saved_before["architecture"] = "conv"
        assert EncoderConfig.from_dict(saved_before).input == legacy
    assert ENCODERS[Modality.FACE].input == FACE_CHIP
    with pytest.raises(ValueError, match="not an input of audio models"):
        EncoderConfig(Modality.AUDIO, input=FACE_CHIP)
    with pytest.raises(ValueError, match="encodes face"):
        EncoderConfig(Modality.AUDIO, architecture="dlib-resnet")
    with pytest.raises(ValueError, match="freeze_trunk"):
        EncoderConfig(Modality.FACE, freeze_trunk=True)


def test_corrupted_artifact_is_refused(face_run, tmp_path):
    path = tmp_path / "face.pt"
    digest = face_run.model.save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        EmbeddingModel.load(path, expected_sha256=digest)
    path.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(ArtifactError):
        EmbeddingModel.load(path)
    torch.save({"weights": torch.zeros(3)}, path)  # a readable torch file, but not a model
    with pytest.raises(ArtifactError):
        EmbeddingModel.load(path)


def test_model_refuses_inputs_of_another_modality(face_run):
    with pytest.raises(ValueError, match="face model"):
        face_run.model.embed(np.zeros((2, *_shape(Modality.AUDIO)), dtype=np.float32))


def test_model_respects_an_explicit_device(face_run):
    assert face_run.model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    model = EmbeddingModel(build_encoder(face_run.model.config), "v", 0.5, device="cpu")
    assert model.device == torch.device("cpu")


def test_configs_round_trip_through_json():
    for config in [*ENCODERS.values(), EncoderConfig(Modality.AUDIO, energy="cosine")]:
        assert EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for presets in PRESETS.values():
        for config in presets.values():
            assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError):
        EncoderConfig(Modality.FACE, energy="manhattan")
    with pytest.raises(ValueError, match="shrinkage"):
        EncoderConfig(Modality.FACE, whitening=1.0)
    book_encoder, _ = BASELINES["book"]
    with pytest.raises(ValueError, match="belong to the conv architecture"):
        dataclasses.replace(book_encoder, whitening=0.1)


# --- training on real speech ----------------------------------------------------------------


def test_quick_audio_training_identifies_speakers_on_unseen_words():
    every_word = common_words()
    words = every_word[:: len(every_word) // AUDIO_WORDS][:AUDIO_WORDS]
    samples = _samples(iter_asterisk(words=words))
    config = dataclasses.replace(PRESETS[Modality.AUDIO]["quick"], max_seconds=600.0)
    result = train_model(samples, ENCODERS[Modality.AUDIO], config)
    held_words = {
        s.group for s in split_by_group(samples, config.held_out_fraction, config.seed)[1]
    }
    assert result.counts["held_out_groups"] == len(held_words) >= 2
    assert result.counts["held_out_samples"] == 6 * len(held_words)  # every voice says every word
    assert result.metrics["eer"] < 0.35
    # Five speakers: a random nearest neighbour is right about one time in five.
    assert result.metrics["nn_accuracy"] > 0.4
    assert result.metrics["genuine_mean"] < result.threshold < result.metrics["impostor_mean"]
    batch = np.stack([s.x for s in samples[:16]])
    np.testing.assert_allclose(
        result.model.embed(batch), _trained_module_embeds(result.model, batch), atol=FOLDED_ATOL
    )


def test_face_augmentation_greys_out_one_box_on_about_half_the_faces():
    """Random erasing: a white face can only reach exactly 0.5 where it was erased (contrast
    and brightness keep white above 0.8), so the grey pixels are the box itself."""
    _, height, width = _shape(Modality.FACE)
    faces = torch.ones(400, 1, height, width)
    augmented = AUGMENTATIONS[Modality.FACE](faces, torch.Generator().manual_seed(0))
    grey = augmented[:, 0] == 0.5
    erased = grey.flatten(1).any(1)
    assert 0.4 < erased.float().mean() < 0.6
    box = (int(height * ERASE_FRACTION), int(width * ERASE_FRACTION))
    for face in grey[erased]:
        rows, cols = face.any(1).nonzero().flatten(), face.any(0).nonzero().flatten()
        assert (len(rows), len(cols)) == box
        assert face.sum() == box[0] * box[1]


def test_retraining_reads_back_the_newest_labelled_items_up_to_its_window(tmp_path):
    """A grown stream must not decide whether a retraining run fits in memory."""
    settings = Settings(state_dir=tmp_path, retrain_max_items=3)
    store, payloads = MetadataStore.from_settings(settings), PayloadStore(settings.payloads_dir)
    faces = list(iter_orl())[:5]
    hashes = payloads.put_all(face.read_bytes() for face in faces)
    start = datetime(2026, 11, 27, tzinfo=UTC)
    store.upsert_items(
        [
            ItemRecord(
                modality=Modality.FACE,
                item_id=face.id,
                label=face.label,
                payload_sha256=sha256,
                content_type="image/x-portable-graymap",
                source_topic="twinstream.face",
                source_partition=0,
                source_offset=n,
                indexed_at=start + timedelta(minutes=n),
            )
            for n, (face, sha256) in enumerate(zip(faces, hashes, strict=True))
        ]
    )

    samples = stored_samples(settings, store, Modality.FACE)

    assert [s.id for s in samples] == sorted(face.id for face in faces[2:])
    assert all(s.x.shape == _shape(Modality.FACE) for s in samples)


# --- pretrained trunks ------------------------------------------------------------------------


def test_a_pretrained_trunk_stays_as_shipped_and_the_artifact_says_where_it_came_from(
    face_run, tmp_path
):
    config = face_run.model.config
    shipped = dlib_resnet_source()
    assert config.pretrained_sha256 == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert config.pretrained_source.endswith(f"models/{shipped.name}")
    state, _, _ = dlib_resnet_weights()
    trained = face_run.model.encoder.trunk.state_dict()
    assert all(torch.equal(trained[name].cpu(), state[name]) for name in state)  # frozen
    assert not torch.equal(face_run.model.encoder.head.weight.cpu(), torch.eye(128))  # trained

    path = tmp_path / "face.pt"
    loaded = EmbeddingModel.load(path, face_run.model.save(path))
    assert loaded.config.pretrained_sha256 == config.pretrained_sha256


def test_a_frozen_trunk_without_augmentation_is_run_once_and_its_head_trained_on_that():
    """The speaker LSTM baseline: the trunk's outputs are computed once up front, so a training
    epoch costs the head alone; the trunk keeps its shipped weights."""
    encoder_config, train_config = BASELINES["ge2e"]
    voices = {"carlo", "june", "menardi"}
    clips = [i for i in iter_asterisk(words=common_words()[:24]) if i.label in voices]
    samples = [
        Sample(c.id, c.label, c.word, decode(encoder_config.input, c.read_bytes())) for c in clips
    ]
    calls = []
    lstm = SpeakerLSTM.forward

    def counted(self, x):
        calls.append(len(x))
        return lstm(self, x)

    config = dataclasses.replace(train_config, epochs=3, identities_per_batch=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SpeakerLSTM, "forward", counted)
        result = train_model(samples, encoder_config, config)
    train, _ = split_by_group(samples, config.held_out_fraction, config.seed)
    assert calls[0] == len(train) and sum(calls) < 2 * len(samples)  # once, then calibration
    assert result.metrics["epochs"] == 3 and result.metrics["steps"] > 3
    state, source, _ = read_resemblyzer_weights()
    trunk = result.model.encoder.trunk.state_dict()
    assert all(torch.equal(trunk[name].cpu(), state[name]) for name in state)
    assert result.model.config.pretrained_source == source == "resemblyzer==0.1.4:pretrained.pt"
