"""Energy functions E(a, b): the distance the siamese twin, the loss and the index agree on.

An energy is an object handed to the loss and to the model (the pytorch-metric-learning
design), so switching Euclidean for cosine never touches the loss formula. Each energy also
knows how to read a FAISS squared-L2 result: the index always holds L2-normalised embeddings
in an L2 index, and only the conversion from squared L2 to E differs per energy.
"""

from abc import ABC, abstractmethod

import numpy as np
import torch.nn.functional as F
from torch import Tensor

# Keeps sqrt differentiable for a genuine pair that maps to the very same point.
_MIN_SQUARED = 1e-12


class Energy(ABC):
    """A distance between embeddings: small for the same identity, large otherwise."""

    name: str

    @abstractmethod
    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """Row-wise energy of (N, D) and (N, D) -> (N,)."""

    @abstractmethod
    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        """All-pairs energy of (N, D) and (M, D) -> (N, M)."""

    @abstractmethod
    def from_squared_l2(self, d2: np.ndarray) -> np.ndarray:
        """E from the squared L2 distance between unit vectors (what FAISS returns)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EuclideanEnergy(Energy):
    name = "euclidean"

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).pow(2).sum(dim=1).clamp_min(_MIN_SQUARED).sqrt()

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        d2 = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * a @ b.T
        return d2.clamp_min(_MIN_SQUARED).sqrt()

    def from_squared_l2(self, d2: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(d2, 0.0))


class CosineEnergy(Energy):
    """E = 1 − cos(a, b), in [0, 2]."""

    name = "cosine"

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return 1.0 - F.cosine_similarity(a, b, dim=1)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T

    def from_squared_l2(self, d2: np.ndarray) -> np.ndarray:
        # For unit vectors ‖a − b‖² = 2 − 2·cos(a, b).
        return np.asarray(d2) / 2.0


ENERGIES: dict[str, type[Energy]] = {cls.name: cls for cls in (EuclideanEnergy, CosineEnergy)}


def energy_by_name(name: str) -> Energy:
    """The energy a config or an artifact names; ValueError lists the known ones."""
    try:
        return ENERGIES[name]()
    except KeyError:
        raise ValueError(f"unknown energy {name!r}; known: {sorted(ENERGIES)}") from None
