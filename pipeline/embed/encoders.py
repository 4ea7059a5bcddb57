"""The twin networks: map one face or one utterance to a unit embedding.

Trained from scratch, both modalities share one conv trunk and differ only in how the input
is shrunk before it (the face is downsampled in both axes, the spectrogram only in time,
keeping every mel band), so the two cannot drift apart in anything but what their inputs
demand. A pretrained trunk (dlib's face ResNet, Resemblyzer's speaker LSTM) gets a linear
head trained on top.
"""

import copy
import dataclasses
import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from pipeline.embed.config import EncoderConfig
from pipeline.embed.dlib_resnet import DESCRIPTOR_DIM, DlibResNet, dlib_resnet_weights
from pipeline.embed.speaker_lstm import EMBEDDING_DIM as SPEAKER_DIM
from pipeline.embed.speaker_lstm import SpeakerLSTM, read_resemblyzer_weights
from pipeline.inputs import INPUTS
from schemas.items import Modality


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def _inference_block(block: nn.Sequential) -> nn.Sequential:
    """The same function as a trained `_conv_block` in eval mode, in fewer passes over memory:
    eval batch norm is a fixed per-channel affine map, so it folds into the convolution's
    weights; and max pooling commutes with ReLU (both monotone), so pooling first leaves ReLU
    a quarter of the values."""
    conv, norm, relu, pool = block
    return nn.Sequential(fuse_conv_bn_eval(conv, norm), pool, relu)


class UnitEncoder(nn.Module):
    """What every service encoder ends in: L2 norm [-> whitening -> L2 norm].

    The unit-norm output keeps both energies in [0, 2] and makes the FAISS L2 index exact
    for either of them. The whitening map is fitted after training (`set_whitening`), not
    learned: until then it is the identity, which the second norm leaves unchanged.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        if config.whitening:
            # Buffers, not parameters: saved and moved with the weights, never optimised.
            self.register_buffer("whitening_weight", torch.eye(config.embedding_dim))
            self.register_buffer("whitening_bias", torch.zeros(config.embedding_dim))

    def set_whitening(self, weight: Tensor, bias: Tensor) -> None:
        """Embeddings become normalize(weight @ e + bias); only for a config with whitening."""
        if not self.config.whitening:
            raise ValueError("this encoder's config has no whitening layer")
        self.whitening_weight.copy_(weight)
        self.whitening_bias.copy_(bias)

    def embedding(self, x: Tensor) -> Tensor:
        """The raw embedding of one view, before normalisation."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        embedding = self.embedding(x)
        if self.config.mirror_tta and not self.training:
            embedding = embedding + self.embedding(x.flip(-1))
        return self.unit(embedding)

    def unit(self, embedding: Tensor) -> Tensor:
        unit = F.normalize(embedding, dim=1)
        if self.config.whitening:
            unit = F.normalize(F.linear(unit, self.whitening_weight, self.whitening_bias), dim=1)
        return unit


class ConvEncoder(UnitEncoder):
    """Input pooling -> conv blocks -> average pool (to the `head_grid` bins) -> dropout ->
    linear -> unit embedding."""

    # (height, width) factor the raw input is average-pooled by before the trunk.
    input_pool: tuple[int, int] = (1, 1)

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        widths = (1, *config.channels)
        self.stem = nn.Sequential(nn.AvgPool2d(self.input_pool), nn.BatchNorm2d(1))
        self.trunk = nn.Sequential(*(_conv_block(a, b) for a, b in pairwise(widths)))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(config.head_grid),
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(widths[-1] * math.prod(config.head_grid), config.embedding_dim),
        )

    def for_inference(self) -> "ConvEncoder":
        """An eval-mode copy for embedding: blocks folded (see `_inference_block`) and
        channels-last weights, which oneDNN convolves and pools without reordering; inputs
        should be channels-last too. The trained module stays as it is: it is what gets saved."""
        fast = copy.deepcopy(self).eval()
        fast.trunk = nn.Sequential(*(_inference_block(block) for block in fast.trunk))
        return fast.to(memory_format=torch.channels_last)

    def embedding(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(self.stem(x)))


class FaceEncoder(ConvEncoder):
    """Grayscale 112×92 faces, halved to 56×46: identity survives, compute drops fourfold."""

    input_pool = (2, 2)


class AudioEncoder(ConvEncoder):
    """Log-mel (64 bands × T frames); time halved to 20 ms steps, which voice identity tolerates."""

    input_pool = (2, 4)


ENCODER_CLASSES: dict[Modality, type[ConvEncoder]] = {
    Modality.FACE: FaceEncoder,
    Modality.AUDIO: AudioEncoder,
}


class PretrainedEncoder(UnitEncoder):
    """A pretrained trunk -> dropout -> linear head -> unit embedding.

    The head starts as the identity, so an untrained encoder already ranks as the shipped
    network does, and contrastive training moves on from there. With `freeze_trunk` only the
    head learns, and the trunk runs without building a graph.
    """

    trunk_dim: int

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.trunk = self.build_trunk()
        self.trunk.requires_grad_(not config.freeze_trunk)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.trunk_dim, config.embedding_dim)
        with torch.no_grad():
            nn.init.eye_(self.head.weight)
            self.head.bias.zero_()

    @staticmethod
    def build_trunk() -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def shipped_weights() -> tuple[dict[str, Tensor], str, str]:
        """(trunk state dict, source file, its sha256)."""
        raise NotImplementedError

    def load_pretrained(self) -> None:
        """The trunk's weights as shipped; the config records their file and sha256."""
        state, source, sha256 = self.shipped_weights()
        self.trunk.load_state_dict(state)
        self.config = dataclasses.replace(
            self.config, pretrained_source=source, pretrained_sha256=sha256
        )

    def for_inference(self) -> "PretrainedEncoder":
        """An eval-mode, channels-last copy (oneDNN convolves those without reordering)."""
        return copy.deepcopy(self).eval().to(memory_format=torch.channels_last)

    def embedding(self, x: Tensor) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_trunk):
            features = self.trunk(x)
        return self.head(self.dropout(features))

    def from_trunk(self, features: Tensor) -> Tensor:
        """The unit embedding of trunk outputs computed beforehand (a frozen trunk's never
        change, so training can compute them once)."""
        return self.unit(self.head(self.dropout(features)))


class PretrainedFaceEncoder(PretrainedEncoder):
    """dlib's face ResNet: aligned 150×150 chips -> 128-d descriptor."""

    trunk_dim = DESCRIPTOR_DIM
    build_trunk = staticmethod(DlibResNet)
    shipped_weights = staticmethod(dlib_resnet_weights)


class PretrainedSpeakerEncoder(PretrainedEncoder):
    """Resemblyzer's GE2E LSTM: windows of 16 kHz mel frames -> 256-d speaker embedding."""

    trunk_dim = SPEAKER_DIM
    build_trunk = staticmethod(SpeakerLSTM)
    shipped_weights = staticmethod(read_resemblyzer_weights)


PRETRAINED_CLASSES: dict[str, type[PretrainedEncoder]] = {
    "dlib-resnet": PretrainedFaceEncoder,
    "ge2e-lstm": PretrainedSpeakerEncoder,
}


class BookEncoder(nn.Module):
    """The book's chapter 2 twin, layer for layer: valid 3×3 convs with ReLU, 2×2 max pooling
    and dropout, then Dense 128 (ReLU, dropout 0.1) and Dense `embedding_dim` with ReLU.

    Its output is not normalised (the book measures plain Euclidean distance), so it is kept
    as the evaluated baseline, not as something the cosine energy could serve. The input is
    shrunk by the same factors as the service's encoder (faces to 56×46, as the book does by
    striding).
    """

    hidden = 128

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        pool = ENCODER_CLASSES[config.modality].input_pool
        layers: list[nn.Module] = [nn.AvgPool2d(pool)]
        _, height, width = INPUTS[config.input].shape
        height, width = height // pool[0], width // pool[1]
        for c_in, c_out in pairwise((1, *config.channels)):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Dropout(config.dropout),
            ]
            height, width = (height - 2) // 2, (width - 2) // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(config.channels[-1] * math.prod((height, width)), self.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Linear(self.hidden, config.embedding_dim),
            nn.ReLU(inplace=True),
        )

    def for_inference(self) -> "BookEncoder":
        """An eval-mode copy: the baseline is kept as the book built it, nothing folded."""
        return copy.deepcopy(self).eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


Encoder = UnitEncoder | BookEncoder


def build_encoder(config: EncoderConfig) -> Encoder:
    """The network `config` describes, with fresh (untrained) weights."""
    if config.architecture == "book":
        return BookEncoder(config)
    if config.architecture in PRETRAINED_CLASSES:
        return PRETRAINED_CLASSES[config.architecture](config)
    return ENCODER_CLASSES[config.modality](config)


def initial_encoder(config: EncoderConfig, pretrained: bool = True) -> Encoder:
    """What training starts from: fresh weights, with any pretrained trunk loaded unless
    `pretrained` is False."""
    encoder = build_encoder(config)
    if pretrained and isinstance(encoder, PretrainedEncoder):
        encoder.load_pretrained()
    return encoder
