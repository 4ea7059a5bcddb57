"""The GE2E speaker encoder (Wan et al. 2018) as Resemblyzer 0.1.4 ships it, in our own code.

Three LSTM layers (40 mel bands -> 256), the last layer's final hidden state through
Linear(256, 256) and ReLU, L2-normalised: one unit vector per 1.6 s window. A clip is K such
windows (pipeline/decode/speech.py); its embedding is the normalised mean of theirs, as in
Resemblyzer's `embed_utterance`. The weights are read from `resemblyzer/pretrained.pt` inside
the installed wheel (MIT licence) without importing resemblyzer, whose import pulls in
librosa and webrtcvad.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.decode.speech import N_MELS, PARTIAL_FRAMES
from pipeline.embed.shipped import provenance, shipped_file

HIDDEN = 256
EMBEDDING_DIM = 256
LAYERS = 3
WEIGHTS_PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"


class SpeakerLSTM(nn.Module):
    """(N, K, 40, 160) mel windows -> (N, 256) unit clip embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING_DIM)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[2:]) != (N_MELS, PARTIAL_FRAMES):
            raise ValueError(f"expected (N, K, {N_MELS}, {PARTIAL_FRAMES}), got {tuple(x.shape)}")
        n, k = x.shape[:2]
        partials = self.embed_partials(x.reshape(n * k, N_MELS, PARTIAL_FRAMES))
        return F.normalize(partials.reshape(n, k, -1).mean(dim=1), dim=1)

    def embed_partials(self, windows: Tensor) -> Tensor:
        """(M, 40, 160) windows -> (M, 256) unit window embeddings."""
        return self.project(self.final_state(windows))

    def final_state(self, windows: Tensor) -> Tensor:
        """(M, 40, 160) -> (M, 256): the top LSTM layer's hidden state after the last frame
        (what a frozen-LSTM head trains on, computed once)."""
        _, (hidden, _) = self.lstm(windows.transpose(1, 2))
        return hidden[-1]

    def project(self, state: Tensor) -> Tensor:
        return F.normalize(F.relu(self.linear(state)), dim=1)


def resemblyzer_weights_path() -> Path:
    """`pretrained.pt` inside the installed resemblyzer package, found without importing it."""
    return shipped_file(
        WEIGHTS_PACKAGE,
        WEIGHTS_FILE,
        WEIGHTS_PACKAGE,
        "pip install --no-deps resemblyzer==0.1.4 (MIT; only its weights file is read)",
    )


def read_resemblyzer_weights() -> tuple[dict[str, Tensor], str, str]:
    """(SpeakerLSTM state dict, "resemblyzer==<version>:pretrained.pt", sha256 of the file)."""
    path = resemblyzer_weights_path()
    # weights_only: the checkpoint is plain tensors, so nothing in it may run code.
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.float() for k, v in checkpoint["model_state"].items() if k in _PARAMETER_NAMES}
    missing = _PARAMETER_NAMES - state.keys()
    if missing:
        raise ValueError(f"{path}: no {sorted(missing)} in model_state; not the GE2E encoder")
    source, sha256 = provenance(WEIGHTS_PACKAGE, WEIGHTS_FILE, path)
    return state, source, sha256


def pretrained_speaker_lstm() -> SpeakerLSTM:
    """A SpeakerLSTM holding the shipped weights, in eval mode."""
    model = SpeakerLSTM()
    state, _, _ = read_resemblyzer_weights()
    model.load_state_dict(state)
    return model.eval()


_PARAMETER_NAMES = frozenset(SpeakerLSTM().state_dict())
