"""A trained encoder as the service uses it: embed arrays, know its energy, threshold and version.

The artifact is one torch file holding the encoder config, weights, threshold and version; it
is written atomically and identified by its sha256, so a reader either gets the exact bytes the
trainer wrote or a refusal, never a half-written or swapped model.
"""

import hashlib
import io
import os
import secrets
from pathlib import Path

import numpy as np
import torch

from pipeline.embed.config import EncoderConfig
from pipeline.embed.encoders import Encoder, build_encoder
from pipeline.embed.energy import Energy, energy_by_name
from pipeline.inputs import INPUTS
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

    def save(self, path: str | Path) -> str:
        """Write the artifact atomically (tmp + fsync + rename); returns its sha256."""
        path = Path(path)
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
        data = buffer.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(
        cls,
        path: str | Path,
        expected_sha256: str | None = None,
        device: str | torch.device | None = None,
    ) -> "EmbeddingModel":
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise ArtifactError(f"{path}: sha256 {digest} does not match {expected_sha256}")
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
            raise ArtifactError(f"{path}: not a usable twinstream model artifact ({exc})") from exc
        return cls(encoder, version, threshold, device=device)

    @classmethod
    def from_record(
        cls, record: ModelRecord, device: str | torch.device | None = None
    ) -> "EmbeddingModel":
        """The registered version's artifact, refused unless its sha256 is the recorded one."""
        return cls.load(record.artifact_path, record.artifact_sha256, device)

    def __repr__(self) -> str:
        return (
            f"EmbeddingModel(version={self.version!r}, modality={self.config.modality.value!r}, "
            f"energy={self.config.energy!r}, threshold={self.threshold:.4f}, device={self.device})"
        )
