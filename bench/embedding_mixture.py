"""Face embeddings by the million, shaped like the production face model's on real faces.

The shape is measured from the 400 ORL faces embedded by the production face encoder as
training starts it (the shipped dlib network under an identity head): the mean direction,
the covariance of the identities' centres and the covariance of shots around their centre.
Synthetic identities then get centres drawn from a Gaussian with the first two, and shots
drawn around them with the third, each shot L2-normalised as the encoder's output is.
Gaussians are what 40 identities can justify: they fix the cone the embeddings fill, how
many directions they use and how tight one person's shots are, which is what IVF's lists
and SQ8's ranges depend on.
"""

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data.orl import iter_orl
from pipeline.embed.config import ENCODERS
from pipeline.embed.encoders import initial_encoder
from pipeline.inputs import INPUTS
from schemas.items import Modality

EMBED_BATCH = 50


@dataclass(frozen=True)
class MixtureShape:
    """centre = mean + z @ centre_root, shot = normalise(centre + z @ within_root), z ~ N(0, I)."""

    mean: np.ndarray
    centre_root: np.ndarray
    within_root: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.mean)


def orl_face_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, person labels) of every ORL face through the production face encoder."""
    config = ENCODERS[Modality.FACE]
    encoder = initial_encoder(config).eval()
    faces = list(iter_orl())
    decode = INPUTS[config.input].decoder
    inputs = np.stack([decode(face.read_bytes()).x for face in faces])
    with torch.inference_mode():
        embeddings = [
            encoder(torch.from_numpy(inputs[start : start + EMBED_BATCH])).numpy()
            for start in range(0, len(inputs), EMBED_BATCH)
        ]
    return np.concatenate(embeddings), np.asarray([face.label for face in faces])


def _root(covariance: np.ndarray) -> np.ndarray:
    """R with RᵀR = the covariance, negative eigenvalues (estimation noise) clipped to 0."""
    values, vectors = np.linalg.eigh(covariance)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))).T


def measure_shape(embeddings: np.ndarray, labels: np.ndarray) -> MixtureShape:
    """Within: the pooled covariance of shots around their person's mean. Centres: the total
    covariance less the within one, full rank where the few persons' own means are not."""
    people = np.unique(labels)
    offsets = np.concatenate(
        [embeddings[labels == p] - embeddings[labels == p].mean(0) for p in people]
    )
    within = offsets.T @ offsets / (len(embeddings) - len(people))
    total = np.cov(embeddings, rowvar=False)
    return MixtureShape(
        mean=embeddings.mean(0),
        centre_root=_root(total - within),
        within_root=_root(within),
    )


@dataclass(frozen=True)
class Mixture:
    shape: MixtureShape
    centres: np.ndarray

    @classmethod
    def draw(cls, shape: MixtureShape, identities: int, rng: np.random.Generator) -> "Mixture":
        z = rng.standard_normal((identities, shape.dim), dtype=np.float32)
        return cls(shape, shape.mean + z @ shape.centre_root.astype(np.float32))

    def shots(self, identities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One fresh unit vector per entry of `identities` (indexes into the centres)."""
        z = rng.standard_normal((len(identities), self.shape.dim), dtype=np.float32)
        x = self.centres[identities] + z @ self.shape.within_root.astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
