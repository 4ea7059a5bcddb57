"""Within-class whitening: the map makes each identity's scatter equal in every direction."""

import numpy as np
import pytest

from pipeline.embed.whitening import within_class_whitening


def within_covariance(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    centred = np.concatenate([x[labels == c] - x[labels == c].mean(0) for c in np.unique(labels)])
    return centred.T @ centred / len(x)


@pytest.fixture(scope="module")
def scattered() -> tuple[np.ndarray, np.ndarray]:
    """Six identities whose members scatter 1,000× more along some axes than others, in a
    rotated frame (so no axis of the data is an axis of the scatter)."""
    rng = np.random.default_rng(0)
    dim, per = 8, 400
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    spread = np.logspace(0, -1.5, dim)
    labels = np.repeat(np.arange(6), per)
    centres = rng.normal(scale=2.0, size=(6, dim))
    x = centres[labels] + (rng.normal(size=(len(labels), dim)) * spread) @ rotation.T
    return x, labels


def test_the_scatter_becomes_the_same_in_every_direction(scattered):
    x, labels = scattered
    weight, bias = within_class_whitening(x, labels, shrinkage=1e-6)
    whitened = x @ weight.T + bias
    np.testing.assert_allclose(within_covariance(whitened, labels), np.eye(8), atol=1e-3)
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-4)


def test_shrinkage_stops_short_of_full_whitening(scattered):
    x, labels = scattered

    def spread(shrinkage: float) -> float:
        weight, bias = within_class_whitening(x, labels, shrinkage)
        variances = np.linalg.eigvalsh(within_covariance(x @ weight.T + bias, labels))
        return float(variances.max() / variances.min())

    before = np.linalg.eigvalsh(within_covariance(x, labels))
    assert before.max() / before.min() > 500
    assert 1.0 < spread(0.01) < spread(0.5) < before.max() / before.min()


@pytest.mark.parametrize("shrinkage", [0.0, 1.0, -0.1])
def test_shrinkage_outside_the_open_unit_interval_is_refused(scattered, shrinkage):
    with pytest.raises(ValueError, match="shrinkage"):
        within_class_whitening(*scattered, shrinkage)
