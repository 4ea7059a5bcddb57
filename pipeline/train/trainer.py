"""Train an encoder with the contrastive loss and calibrate its threshold on unseen groups.

One call does what a model version needs: split by group, train on P×K in-batch pairs (plus
any explicit labelled pairs), embed the held-out groups, and pick the EER operating point as
the threshold the service will answer "same" with. Everything random is seeded from the train
config, so a run reproduces its metrics (unless the wall-clock budget cuts it short).
"""

import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.embed.config import EncoderConfig, TrainConfig
from pipeline.embed.encoders import Encoder, PretrainedEncoder, UnitEncoder, initial_encoder
from pipeline.embed.energy import energy_by_name
from pipeline.embed.loss import ContrastiveLoss
from pipeline.embed.model import UNREGISTERED, EmbeddingModel, pick_device
from pipeline.embed.whitening import within_class_whitening
from pipeline.evaluation.scoring import score_model
from pipeline.train.batches import Batch, PairBatches, RandomPairBatches, balanced_hard_pairs
from pipeline.train.metrics import curve_points
from pipeline.train.sample import Sample
from pipeline.train.split import split_by_group
from schemas.items import Modality

# cuBLAS sums deterministically only with a fixed workspace, which it reads when the first
# handle is made: set before any CUDA work of a process that may train (the default otherwise
# only makes deterministic mode warn).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

Progress = Callable[[float, str], None]
Batches = PairBatches | RandomPairBatches


@dataclass(frozen=True)
class TrainResult:
    model: EmbeddingModel
    threshold: float
    metrics: dict[str, Any]
    counts: dict[str, int]
    # The identities kept out of training and calibrated on: a gate scores on the same ones.
    held_out: list[Sample]
    # Their (FAR, FRR) operating points, thinned (metrics.curve_points): the ROC/DET to draw.
    held_out_curve: dict[str, list[float]]


# Half the faces get a grey square over this share of their height and width.
ERASE_FRACTION = 0.3
ERASE_PROBABILITY = 0.5


def _augment_faces(x: Tensor, gen: torch.Generator) -> Tensor:
    """Small rotations, zooms and shifts, mirror images, brightness/contrast changes: the
    variation between two photos of one person that the network should learn to ignore. Then
    a grey square over part of half the faces (random erasing): occlusion, and a push to use
    the whole face rather than one region, which 240 training faces would otherwise allow."""
    n = x.shape[0]
    angle = torch.deg2rad(8.0 * (2 * torch.rand(n, generator=gen) - 1))
    scale = 1.0 + 0.1 * (2 * torch.rand(n, generator=gen) - 1)
    mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = 0.06 * (2 * torch.rand(n, 2, generator=gen) - 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
            torch.stack([sin * mirror, cos, shift[:, 1]], 1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    brightness = 0.1 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    return _erase(((x - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0), gen)


def _erase(x: Tensor, gen: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    eh, ew = int(h * ERASE_FRACTION), int(w * ERASE_FRACTION)
    top = torch.randint(0, h - eh + 1, (n,), generator=gen).view(n, 1, 1, 1)
    left = torch.randint(0, w - ew + 1, (n,), generator=gen).view(n, 1, 1, 1)
    # The draws (box, then whether) and the upper-tail test are those the seeded runs were
    # measured with (docs/experiments/2026-11-27-face-head-grid-and-erasing.md), so the
    # default reproduces them exactly.
    chosen = (torch.rand(n, generator=gen) >= 1 - ERASE_PROBABILITY).view(n, 1, 1, 1)
    rows, cols = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    return torch.where(chosen & inside, 0.5, x)


def _augment_audio(x: Tensor, gen: torch.Generator) -> Tensor:
    """Level and spread drift, time shifts and a little noise: the variation between two
    recordings of one voice that the network should ignore. The decoder already standardises
    each clip (removing recording gain), so the level changes here are the small residue that
    clip length and content leave, not raw gain."""
    n, _, _, t = x.shape
    gain = 0.25 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    spread = 1.0 + 0.1 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    shifts = torch.randint(-t // 10, t // 10 + 1, (n,), generator=gen).tolist()
    x = torch.stack([torch.roll(x[i], shifts[i], dims=-1) for i in range(n)])
    return x * spread + gain + 0.1 * torch.randn(x.shape, generator=gen)


AUGMENTATIONS: dict[Modality, Callable[[Tensor, torch.Generator], Tensor]] = {
    Modality.FACE: _augment_faces,
    Modality.AUDIO: _augment_audio,
}


def train_model(
    samples: Sequence[Sample],
    encoder_config: EncoderConfig,
    train_config: TrainConfig,
    progress: Progress | None = None,
    pairs: Sequence[tuple[int, int, bool]] = (),
    version: str = UNREGISTERED,
    threads: int | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train, calibrate and evaluate one model version.

    `pairs` are explicit (index, index, same) pairs into `samples`; those with an end in a
    held-out group are left out, since training on them would leak into calibration.
    `threads` defaults to every core; the previous torch setting is restored afterwards.
    `device` defaults to CUDA when present; a seeded run reproduces bit for bit on either
    device (on CUDA within one GPU model and software stack).
    """
    report = progress or (lambda fraction, message: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    chosen = pick_device(device)
    try:
        with torch.random.fork_rng(devices=[]), _deterministic(chosen):
            torch.manual_seed(train_config.seed)
            return _train(samples, encoder_config, train_config, report, pairs, version, chosen)
    finally:
        torch.set_num_threads(previous_threads)


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """CUDA's fastest kernels (cuDNN's convolution backward, index_add) sum in a varying order,
    so two seeded runs drift apart and the promotion gate would compare noise; training asks
    for the deterministic ones instead. The CPU kernels are deterministic already.

    Warn-only because adaptive average pooling has no deterministic backward on CUDA: the
    head's grid cells do not overlap, so each input gets one atomic addition and the result
    is exact anyway (two seeded CUDA runs compare equal in tests/test_train.py).
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a deterministic")
            yield
    finally:
        enabled, warn_only, cudnn.deterministic, cudnn.benchmark = previous
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@dataclass
class _Fit:
    """What the optimisation loop reports back."""

    epochs: int = 0
    # Epochs the run plans to finish: the config's, or fewer when the first epoch shows
    # that they would not fit in max_seconds (see `_affordable_epochs`).
    planned_epochs: int = 0
    steps_per_epoch: int = 0
    steps: int = 0
    seconds: float = 0.0
    final_loss: float = float("nan")
    # Where the schedule ended: near zero when the run finished it, the peak when the
    # clock cut it off mid-way.
    final_lr: float = float("nan")

    @property
    def total_steps(self) -> int:
        return self.planned_epochs * self.steps_per_epoch


def _train(
    samples: Sequence[Sample],
    encoder_config: EncoderConfig,
    cfg: TrainConfig,
    report: Progress,
    pairs: Sequence[tuple[int, int, bool]],
    version: str,
    device: torch.device,
) -> TrainResult:
    train, held_out = split_by_group(samples, cfg.held_out_fraction, cfg.seed)
    train_pairs = _pairs_within_train(samples, {s.group for s in held_out}, pairs)
    labels = [s.label for s in train]
    batches: Batches = (
        RandomPairBatches(labels, cfg.random_pairs, cfg.pairs_per_batch, cfg.seed, train_pairs)
        if cfg.random_pairs
        else PairBatches(
            labels,
            cfg.identities_per_batch,
            cfg.samples_per_identity,
            seed=cfg.seed,
            pairs=train_pairs,
        )
    )
    encoder = initial_encoder(encoder_config, pretrained=cfg.from_pretrained)
    x_train = np.stack([s.x for s in train])
    fit = _fit(encoder, x_train, batches, cfg, report, device)
    if encoder_config.whitening:
        views = whitening_views(x_train, np.asarray(labels), cfg, encoder_config)
        _fit_whitening(encoder, views, device)

    report(0.95, "calibrating on held-out groups")
    model = EmbeddingModel(encoder, version, float("nan"), device)
    scores = score_model(model, held_out)
    model.threshold = scores.threshold
    metrics = dict(scores.metrics)
    metrics.update(
        final_loss=fit.final_loss,
        epochs=fit.epochs,
        epochs_planned=fit.planned_epochs,
        final_lr=fit.final_lr,
        steps=fit.steps,
        train_seconds=fit.seconds,
        stopped_early=fit.steps < fit.total_steps,
    )
    counts = {
        "train_samples": len(train),
        "held_out_samples": len(held_out),
        "train_groups": len({s.group for s in train}),
        "held_out_groups": len({s.group for s in held_out}),
        "train_labels": len({s.label for s in train}),
        "held_out_pairs": scores.pairs,
        "held_out_genuine_pairs": scores.genuine_pairs,
        "explicit_pairs_used": len(train_pairs),
        "explicit_pairs_dropped": len(pairs) - len(train_pairs),
    }
    report(1.0, f"held-out EER {metrics['eer']:.3f} at E <= {model.threshold:.4f}")
    return TrainResult(
        model=model,
        threshold=model.threshold,
        metrics=metrics,
        counts=counts,
        held_out=list(held_out),
        held_out_curve=curve_points(scores.distances, scores.same),
    )


# The whitening is fitted on up to this many inputs: the training side plus augmented views
# of it (WHITENING_VIEWS at most). 240 faces in 256 dimensions estimate a covariance poorly,
# and the views add the variation within a person that augmentation stands for
# (docs/experiments/2026-11-28-face-whitened-embeddings.md); a training
# side this large needs none, and the fit's cost stays bounded.
WHITENING_VIEWS = 4
WHITENING_MAX_INPUTS = 8192


def whitening_views(
    x_train: np.ndarray, labels: np.ndarray, cfg: TrainConfig, encoder_config: EncoderConfig
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The inputs a whitening is fitted on, one view at a time with its labels: `x_train`,
    then seeded augmented copies of it while they fit in WHITENING_MAX_INPUTS. One at a
    time, so only one copy of the training side is ever made."""
    yield x_train, labels
    room = WHITENING_MAX_INPUTS // len(x_train) - 1
    copies = max(0, min(WHITENING_VIEWS, room)) if cfg.augment else 0
    augment = AUGMENTATIONS[encoder_config.modality]
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.from_numpy(x_train.astype(np.float32, copy=False))
    for _ in range(copies):
        yield augment(x, gen).numpy(), labels


def _fit_whitening(
    encoder: Encoder, views: Iterable[tuple[np.ndarray, np.ndarray]], device: torch.device
) -> None:
    """From the training side only, so the held-out groups still calibrate a model that
    has seen nothing of them."""
    assert isinstance(encoder, UnitEncoder)  # EncoderConfig refuses whitening otherwise
    model = EmbeddingModel(encoder, "unwhitened", float("nan"), device)
    embedded = [(model.embed(inputs), labels) for inputs, labels in views]
    unwhitened = np.concatenate([vectors for vectors, _ in embedded])
    labels = np.concatenate([labels for _, labels in embedded])
    weight, bias = within_class_whitening(unwhitened, labels, encoder.config.whitening)
    encoder.set_whitening(torch.from_numpy(weight), torch.from_numpy(bias))


def _fit(
    encoder: Encoder,
    x_train: np.ndarray,
    batches: Batches,
    cfg: TrainConfig,
    report: Progress,
    device: torch.device,
) -> _Fit:
    """The contrastive optimisation loop, until its planned epochs are done (cfg.epochs, or
    fewer when the first epoch shows that those would overrun cfg.max_seconds) or the clock
    runs out anyway.

    Augmentation runs on the CPU with its own seeded generator, so a batch is the same
    whatever device trains on it.
    """
    encoder.to(device).train()
    features = _frozen_trunk_features(encoder, x_train, cfg, device)
    x_all = (
        torch.from_numpy(x_train.astype(np.float32, copy=False)) if features is None else features
    )
    forward = encoder if features is None else encoder.from_trunk
    criterion = ContrastiveLoss(energy_by_name(encoder.config.energy), encoder.config.margin)
    fit = _Fit(planned_epochs=cfg.epochs, steps_per_epoch=len(batches))
    optimizer = _optimizer(encoder, cfg)
    schedule = _schedule(optimizer, cfg, fit.total_steps)
    augment = AUGMENTATIONS[encoder.config.modality] if cfg.augment else None
    gen = torch.Generator().manual_seed(cfg.seed)

    started = time.monotonic()
    while fit.epochs < fit.planned_epochs and time.monotonic() - started < cfg.max_seconds:
        losses = []
        for batch in batches:
            # Random pairs repeat samples within a batch: each is encoded once, then its
            # embedding is shared by every pair it is in.
            unique, inverse = np.unique(batch.indices, return_inverse=True)
            x = x_all[torch.from_numpy(unique)]
            encoded = forward((augment(x, gen) if augment else x).to(device))
            emb = encoded.index_select(0, torch.from_numpy(inverse).to(device))
            loss = pair_loss(criterion, emb, batch, cfg.hard_impostors)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            fit.steps += 1
            if time.monotonic() - started >= cfg.max_seconds:
                break
        fit.epochs += 1
        fit.final_loss = float(np.mean(losses))
        fit.seconds = time.monotonic() - started
        if fit.epochs == 1 and (affordable := _affordable_epochs(cfg, fit.seconds)) < cfg.epochs:
            fit.planned_epochs = affordable
            schedule = _schedule(optimizer, cfg, fit.total_steps, done_steps=fit.steps)
        done = max(fit.steps / fit.total_steps, min(fit.seconds / cfg.max_seconds, 1.0))
        report(0.95 * done, f"epoch {fit.epochs}/{fit.planned_epochs} loss {fit.final_loss:.4f}")
    fit.final_lr = float(optimizer.param_groups[0]["lr"])
    return fit


# Inputs a frozen trunk is run on at a time when its outputs are computed up front.
TRUNK_CHUNK = 256


def _frozen_trunk_features(
    encoder: Encoder, x_train: np.ndarray, cfg: TrainConfig, device: torch.device
) -> Tensor | None:
    """The training side through a frozen pretrained trunk, once, when nothing the trunk sees
    changes between epochs (no augmentation): training the head is then a matter of seconds
    instead of a trunk pass per step. None when that does not hold."""
    if not isinstance(encoder, PretrainedEncoder) or not encoder.config.freeze_trunk:
        return None
    if cfg.augment:
        return None
    with torch.inference_mode():
        chunks = [
            encoder.trunk(torch.from_numpy(np.array(x_train[i : i + TRUNK_CHUNK])).to(device))
            for i in range(0, len(x_train), TRUNK_CHUNK)
        ]
    # A plain tensor again: inference tensors cannot be saved for the head's backward pass.
    return torch.cat(chunks).clone()


# Share of max_seconds the epochs are planned into: the first epoch's time is a noisy
# estimate of the rest, on a machine that may be busier later.
PLANNED_SHARE = 0.9


def _affordable_epochs(cfg: TrainConfig, first_epoch_seconds: float) -> int:
    """How many epochs fit in the time budget at the first epoch's pace (at least the one
    done). Planning them, rather than being cut off by the clock, lets a large training set
    (a grown stream at a scheduled retrain) finish a whole learning-rate schedule: a run
    stopped mid-schedule ends at its peak rate, with a worse model than fewer epochs make."""
    seconds = max(first_epoch_seconds, 1e-9)
    return max(1, min(cfg.epochs, int(PLANNED_SHARE * cfg.max_seconds / seconds)))


def _parameter_groups(encoder: Encoder, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The trainable parameters; a pretrained trunk's at `trunk_lr_factor` times the rate,
    so fine-tuning adapts what it learned instead of overwriting it. Each group keeps its
    peak rate, which the schedule reads (it rewrites "lr" as it goes)."""
    if isinstance(encoder, PretrainedEncoder):
        trunk = [p for p in encoder.trunk.parameters() if p.requires_grad]
        rest = [p for n, p in encoder.named_parameters() if not n.startswith("trunk.")]
        groups = [(rest, cfg.lr), (trunk, cfg.lr * cfg.trunk_lr_factor)]
    else:
        groups = [(list(encoder.parameters()), cfg.lr)]
    return [{"params": ps, "lr": lr, "peak_lr": lr} for ps, lr in groups if ps]


def _optimizer(encoder: Encoder, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or the book's RMSprop (with Keras' rho and epsilon)."""
    groups = _parameter_groups(encoder, cfg)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, alpha=0.9, eps=1e-7, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def _schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, done_steps: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """AdamW's one-cycle schedule over `total_steps` (the book's RMSprop keeps a constant
    rate), advanced past the `done_steps` already taken when a run re-plans its length."""
    if cfg.optimizer == "rmsprop":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    peaks = [group["peak_lr"] for group in optimizer.param_groups]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=total_steps)
    for _ in range(done_steps):
        schedule.step()
    return schedule


def pair_loss(criterion: ContrastiveLoss, emb: Tensor, batch: Batch, mine: bool) -> Tensor:
    """The contrastive loss over the batch's pairs, or over the mined subset of them.

    The siamese step: one encoder embedded every sample of the batch (`emb`), and both ends
    of each pair are rows of that one output, so the twins share weights by construction.
    """
    chosen = np.arange(len(batch.first))
    if mine:
        with torch.no_grad():
            energies = criterion.energy(emb[batch.first], emb[batch.second]).cpu().numpy()
        chosen = balanced_hard_pairs(energies, batch)

    def rows(positions: np.ndarray) -> Tensor:
        # index_select, not emb[...]: its CPU backward sums repeated rows in a fixed order,
        # which keeps a seeded run bit-for-bit reproducible on several threads.
        return emb.index_select(0, torch.from_numpy(positions).to(emb.device))

    same = torch.from_numpy(batch.same[chosen]).to(emb.device)
    return criterion(rows(batch.first[chosen]), rows(batch.second[chosen]), same)


def _pairs_within_train(
    samples: Sequence[Sample], held_groups: set[str], pairs: Sequence[tuple[int, int, bool]]
) -> list[tuple[int, int, bool]]:
    """Explicit pairs re-indexed into the training split (which keeps input order); pairs
    touching a held-out sample are dropped."""
    position: dict[int, int] = {}
    for i, sample in enumerate(samples):
        if sample.group not in held_groups:
            position[i] = len(position)
    return [
        (position[a], position[b], bool(same))
        for a, b, same in pairs
        if a in position and b in position
    ]
