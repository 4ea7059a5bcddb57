"""A trained encoder as the service uses it: embed arrays, know its energy, threshold and version.

The artifact is one torch file holding the encoder config, weights, threshold and version; it
is identified by its sha256, so a reader either gets the exact bytes the trainer wrote or a
refusal, never a half-written or swapped model. Registered versions are read through
pipeline/store/artifacts.py, which reaches them from any node.
"""

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from pipeline.embed.config import EncoderConfig
from pipeline.embed.encoders import Encoder, build_encoder
from pipeline.embed.energy import Energy, energy_by_name
from pipeline.inputs import INPUTS
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.atomic import write_atomically
from pipeline.store.records import ModelRecord

ARTIFACT_FORMAT = 1


class ArtifactError(ValueError):
    """The artifact is corrupt, tampered with, or not a twinstream model."""


# What a model is called until the store registers it and names it `<modality>-vN`.
UNREGISTERED = "unregistered"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class EmbeddingModel:
    def __init__(
        self,
        encoder: Encoder,
        version: str,
        threshold: float,
        device: str | torch.device | None = None,
        chunk_size: int = 64,
    ) -> None:
        self.device = pick_device(device)
        self.encoder = encoder.to(self.device).eval()
        # What `embed` runs: the same function as `encoder`, computed faster.
        self._inference = encoder.for_inference()
        self.version = version
        # E <= threshold means "same"; calibrated on held-out pairs at the EER point.
        self.threshold = threshold
        self.chunk_size = chunk_size
        self._energy = energy_by_name(self.config.energy)

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @property
    def energy(self) -> Energy:
        return self._energy

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) decoded inputs -> (N, D) float32 unit embeddings.

        Chunked so a large backlog never holds more than one chunk of activations; each chunk
        is copied because arrays that arrive through Ray are read-only.
        """
        expected = INPUTS[self.config.input].shape
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(expected):
            # The global pooling would happily embed any size, so a face sent to the audio
            # model must be stopped here rather than indexed as nonsense.
            raise ValueError(
                f"{self.config.modality.value} model takes (N, {', '.join(map(str, expected))}) "
                f"batches, got shape {batch.shape}"
            )
        out = np.empty((len(batch), self.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(batch), self.chunk_size):
                chunk = np.array(batch[start : start + self.chunk_size], dtype=np.float32)
                x = torch.from_numpy(chunk).to(self.device, memory_format=torch.channels_last)
                out[start : start + len(chunk)] = self._inference(x).float().cpu().numpy()
        return out

    def to_bytes(self) -> bytes:
        """The artifact: what `from_bytes` reads back."""
        buffer = io.BytesIO()
        torch.save(
            {
                "format": ARTIFACT_FORMAT,
                "config": self.config.to_dict(),
                "version": self.version,
                "threshold": float(self.threshold),
                "state_dict": {k: v.cpu() for k, v in self.encoder.state_dict().items()},
            },
            buffer,
        )
        return buffer.getvalue()

    def save(self, path: str | Path) -> str:
        """Write the artifact atomically; returns its sha256."""
        data = self.to_bytes()
        write_atomically(Path(path), data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        expected_sha256: str | None = None,
        device: str | torch.device | None = None,
        name: str = "artifact",
    ) -> "EmbeddingModel":
        """`name` says in errors which artifact this was."""
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise ArtifactError(f"{name}: sha256 {digest} does not match {expected_sha256}")
        try:
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if payload["format"] != ARTIFACT_FORMAT:
                raise ValueError(f"format {payload['format']!r}, expected {ARTIFACT_FORMAT}")
            encoder = build_encoder(EncoderConfig.from_dict(payload["config"]))
            encoder.load_state_dict(payload["state_dict"])
            version, threshold = str(payload["version"]), float(payload["threshold"])
        except Exception as exc:
            # torch.load and load_state_dict fail in many ways on foreign or damaged files;
            # callers need one answer: this is not a usable model.
            raise ArtifactError(f"{name}: not a usable twinstream model artifact ({exc})") from exc
        return cls(encoder, version, threshold, device=device)

    @classmethod
    def load(
        cls,
        path: str | Path,
        expected_sha256: str | None = None,
        device: str | torch.device | None = None,
    ) -> "EmbeddingModel":
        return cls.from_bytes(Path(path).read_bytes(), expected_sha256, device, str(path))

    @classmethod
    def from_record(
        cls,
        record: ModelRecord,
        artifacts: ModelArtifacts,
        device: str | torch.device | None = None,
    ) -> "EmbeddingModel":
        """The registered version, from wherever `artifacts` reaches it; `read` verified the
        sha256 (ArtifactUnavailableError when no copy has it)."""
        return cls.from_bytes(artifacts.read(record), device=device, name=record.version)

    def __repr__(self) -> str:
        return (
            f"EmbeddingModel(version={self.version!r}, modality={self.config.modality.value!r}, "
            f"energy={self.config.energy!r}, threshold={self.threshold:.4f}, device={self.device})"
        )
