"""What an encoder is and how it is trained, as frozen, JSON-round-trippable values.

The encoder config travels inside the model artifact (so a loaded model rebuilds the exact
network and energy it was trained with); the train config is stored next to each training run
so its metrics can be reproduced.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any, Self

from pipeline.embed.energy import ENERGIES
from pipeline.inputs import INPUTS, LEGACY_INPUTS
from schemas.items import Modality
from schemas.runs import TrainPreset


class _JsonConfig:
    """to_dict/from_dict for flat frozen dataclasses; __post_init__ restores what JSON loses."""

    def to_dict(self) -> dict[str, Any]:
        return {key: _plain(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(**data)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


# "conv": BatchNorm conv blocks, global pooling, unit embeddings, trained from scratch.
# "book": the siamese network of the book's chapter 2 (two valid 3×3 convs, Dense 128–D, ReLU
# output, no normalisation), kept as the measured baseline.
# "dlib-resnet": dlib's pretrained face ResNet (pipeline/embed/dlib_resnet.py) under a linear
# head, trained further with the contrastive loss; takes aligned face chips.
# "ge2e-lstm": Resemblyzer's pretrained speaker LSTM (pipeline/embed/speaker_lstm.py) under a
# linear head, the same way; takes windows of 16 kHz speech.
ARCHITECTURES = ("conv", "book", "dlib-resnet", "ge2e-lstm")
PRETRAINED_ARCHITECTURES = {"dlib-resnet": Modality.FACE, "ge2e-lstm": Modality.AUDIO}


@dataclass(frozen=True)
class EncoderConfig(_JsonConfig):
    modality: Modality
    # Output channels of each conv block; each block halves the spatial size.
    channels: tuple[int, ...] = (32, 64, 128, 128)
    embedding_dim: int = 128
    dropout: float = 0.1
    energy: str = "euclidean"
    # Impostors closer than this are pushed apart. Unit embeddings put E in [0, 2] for both
    # energies, so one scale fits either.
    margin: float = 1.0
    # Last, with defaults: artifacts saved before these existed load as they were trained.
    architecture: str = "conv"
    # Embed each face together with its mirror image and average the two (test-time
    # augmentation): a mirrored face is the same person, so the average is the steadier point.
    mirror_tta: bool = False
    # (rows, columns) the head averages the last feature map into before its linear layer,
    # instead of one global average, which keeps only which features were there, not where:
    # a word is its sounds in order (speech bins time, the last axis), a face its eyes above
    # its mouth (faces keep the whole 3 × 2 map). Old artifacts load with (1, 1).
    head_grid: tuple[int, int] = (1, 1)
    # > 0: after training, the unit embeddings are whitened by the inverse square root of
    # their within-class covariance on the training side, shrunk this far toward a multiple
    # of the identity (pipeline/embed/whitening.py), and made unit again. 0: no such layer.
    whitening: float = 0.0
    # The named input the encoder takes (pipeline/inputs.py); empty: what models saved before
    # inputs had names were trained on.
    input: str = ""
    # Pretrained architectures: keep the trunk's weights as shipped and train the head only.
    freeze_trunk: bool = False
    # Pretrained architectures: the file the trunk's weights were read from and its sha256,
    # filled in when training starts from it.
    pretrained_source: str = ""
    pretrained_sha256: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", Modality(self.modality))
        object.__setattr__(self, "input", self.input or LEGACY_INPUTS[self.modality])
        spec = INPUTS.get(self.input)
        if spec is None or spec.modality is not self.modality:
            raise ValueError(f"{self.input!r} is not an input of {self.modality.value} models")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "head_grid", tuple(int(n) for n in self.head_grid))
        if not self.channels or self.embedding_dim < 1:
            raise ValueError("an encoder needs at least one conv block and a positive dimension")
        if self.energy not in ENERGIES:
            raise ValueError(f"unknown energy {self.energy!r}; known: {sorted(ENERGIES)}")
        if len(self.head_grid) != 2 or min(self.head_grid) < 1:
            raise ValueError("head_grid must be two positive bin counts (rows, columns)")
        if self.margin <= 0 or not 0 <= self.dropout < 1:
            raise ValueError("margin must be positive and dropout in [0, 1)")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; known: {ARCHITECTURES}")
        if not 0 <= self.whitening < 1:
            raise ValueError("whitening is a shrinkage in [0, 1): 0 means none")
        if self.architecture == "book" and (
            self.head_grid != (1, 1) or self.mirror_tta or self.whitening
        ):
            # The book's network flattens its feature map and embeds one view: these fields
            # would be silently ignored, and a config must say what the network does.
            raise ValueError("head_grid, mirror_tta and whitening belong to the conv architecture")
        pretrained_for = PRETRAINED_ARCHITECTURES.get(self.architecture)
        if pretrained_for not in (None, self.modality):
            raise ValueError(
                f"{self.architecture} encodes {pretrained_for.value}, not {self.modality.value}"
            )
        if pretrained_for is not None and self.head_grid != (1, 1):
            raise ValueError("head_grid belongs to the conv architecture")
        if self.freeze_trunk and pretrained_for is None:
            raise ValueError("freeze_trunk belongs to the pretrained architectures")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Also the artifacts saved while the grid had only its time axis (`time_bins`)."""
        data = dict(data)
        if "time_bins" in data:
            data["head_grid"] = (1, data.pop("time_bins"))
        return cls(**data)


OPTIMIZERS = ("adamw", "rmsprop")


@dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    epochs: int = 30
    # A P×K batch: P identities, K samples of each, so every batch holds genuine pairs.
    identities_per_batch: int = 8
    samples_per_identity: int = 4
    # Feed the loss every genuine pair and as many of the closest impostors (see
    # pipeline.train.batches); off feeds every in-batch pair.
    hard_impostors: bool = True
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool = True
    # Share of groups (people for faces, words for speech) kept out of training for calibration.
    held_out_fraction: float = 0.2
    # Wall-clock budget for the optimisation loop; training stops early when it is spent.
    max_seconds: float = 180.0
    # "adamw" with a one-cycle schedule, or "rmsprop" at a constant rate (the book's recipe).
    optimizer: str = "adamw"
    # > 0: train on this many random labelled pairs (half genuine), pairs_per_batch at a time,
    # instead of P×K identity batches: how the book draws its (X1, X2, Y) pairs.
    random_pairs: int = 0
    pairs_per_batch: int = 128
    # A pretrained trunk learns at this share of `lr` (its head at `lr`).
    trunk_lr_factor: float = 1.0
    # Pretrained architectures: start from the shipped weights (False: from random ones).
    from_pretrained: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.max_seconds <= 0:
            raise ValueError("epochs and max_seconds must be positive")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {OPTIMIZERS}")
        if self.random_pairs < 0 or self.pairs_per_batch < 1:
            raise ValueError("random_pairs must be >= 0 and pairs_per_batch positive")
        if self.identities_per_batch < 2 or self.samples_per_identity < 2:
            raise ValueError("a batch needs at least 2 identities with at least 2 samples each")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError("held_out_fraction must be in (0, 1)")
        if self.trunk_lr_factor < 0:
            raise ValueError("trunk_lr_factor must be >= 0")


# The face encoder trained from scratch until 0.2 (docs/evaluation.md#candidates): kept
# as a baseline, and as the config old face models were trained with.
FROM_SCRATCH_FACE = EncoderConfig(
    modality=Modality.FACE, embedding_dim=256, head_grid=(3, 2), whitening=0.1
)

ENCODERS: dict[Modality, EncoderConfig] = {
    # dlib's pretrained ResNet on aligned chips, adapted with the contrastive loss
    # (docs/experiments/2026-12-05-pretrained-faces.md).
    Modality.FACE: EncoderConfig(
        modality=Modality.FACE,
        architecture="dlib-resnet",
        input="face-chip",
        embedding_dim=128,
        dropout=0.0,
        freeze_trunk=True,
    ),
    # Four time bins: the same-word task gains, the speaker task holds. Kept over the
    # pretrained speaker LSTM (BASELINES["ge2e"]), which recognises voices it never heard
    # better but the demo speakers and words far worse
    # (docs/experiments/2026-12-05-unseen-speakers.md).
    Modality.AUDIO: EncoderConfig(modality=Modality.AUDIO, head_grid=(1, 4)),
}

# "default" is what the service trains (first models, retraining; its cost is in
# docs/benchmarks.md#retrain). Like "quick" (tests, on a subset of the data) it is
# bounded by epochs, not the clock: a run cut short on a busy machine stops mid-schedule and
# makes a worse model, which the gate would then rightly refuse; seeded runs reproduce.
# max_seconds is a safety net at the 10-minute training budget: a run whose first epoch shows
# that its epochs would not fit (a large training set) plans fewer and finishes them.
DEFAULT_BUDGET_S = 600.0
PRESETS: dict[Modality, dict[TrainPreset, TrainConfig]] = {
    Modality.FACE: {
        TrainPreset.DEFAULT: TrainConfig(epochs=20, lr=1e-3, max_seconds=DEFAULT_BUDGET_S),
        TrainPreset.QUICK: TrainConfig(epochs=3, lr=1e-3, max_seconds=300.0),
    },
    Modality.AUDIO: {
        TrainPreset.DEFAULT: TrainConfig(
            epochs=30, identities_per_batch=5, samples_per_identity=8, max_seconds=DEFAULT_BUDGET_S
        ),
        TrainPreset.QUICK: TrainConfig(
            epochs=20, identities_per_batch=5, samples_per_identity=6, max_seconds=300.0
        ),
    },
}


def preset_config(
    modality: Modality, preset: TrainPreset, overrides: Mapping[str, Any]
) -> TrainConfig:
    """A preset with the operator's TRAIN_OVERRIDES applied (TypeError for a field
    TrainConfig does not have)."""
    return replace(PRESETS[modality][preset], **overrides)


# Named baselines the evaluation harness scores beside the service's config. "book" is the
# siamese network of the book's chapter 2 with its recipe: 56×46 faces, Conv6–Conv12, Dense
# 128–50, margin 1, RMSprop at Keras' default rate, 13 epochs of 128 random pairs (the book
# draws 20 000 pairs and trains on 75 % of them), no augmentation, no mining.
BASELINES: dict[str, tuple[EncoderConfig, TrainConfig]] = {
    "book": (
        EncoderConfig(
            modality=Modality.FACE,
            architecture="book",
            channels=(6, 12),
            embedding_dim=50,
            dropout=0.25,
            margin=1.0,
        ),
        TrainConfig(
            epochs=13,
            lr=1e-3,
            weight_decay=0.0,
            optimizer="rmsprop",
            augment=False,
            hard_impostors=False,
            random_pairs=15_000,
            pairs_per_batch=128,
            max_seconds=600.0,
        ),
    ),
    # Resemblyzer's pretrained GE2E speaker LSTM on 16 kHz speech under a contrastive head;
    # no augmentation, so the frozen trunk's outputs are computed once (trainer).
    "ge2e": (
        EncoderConfig(
            modality=Modality.AUDIO,
            architecture="ge2e-lstm",
            input="speech-16k",
            embedding_dim=256,
            dropout=0.0,
            freeze_trunk=True,
        ),
        TrainConfig(
            epochs=5,
            lr=1e-4,
            identities_per_batch=5,
            samples_per_identity=8,
            augment=False,
            max_seconds=DEFAULT_BUDGET_S,
        ),
    ),
    # 12 people × 5 faces a batch: more impostors to mine the hardest from.
    "from-scratch": (
        FROM_SCRATCH_FACE,
        TrainConfig(
            epochs=60, identities_per_batch=12, samples_per_identity=5, max_seconds=DEFAULT_BUDGET_S
        ),
    ),
}
