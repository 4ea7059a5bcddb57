"""Within-class whitening of unit embeddings, fitted on the training side after training.

A contrastive encoder trained on a few dozen identities spreads each one's embeddings
unevenly: along some directions a person's faces scatter far (pose, light) and along
others hardly at all, and a plain distance weighs both alike. Whitening by the inverse
square root of the within-class covariance makes that scatter equal in every direction,
so a distance counts the directions that tell people apart. The covariance comes from the
identities trained on; shrinking it toward a multiple of the identity keeps directions
those few identities never varied along from being blown up.
"""

import numpy as np


def within_class_whitening(
    embeddings: np.ndarray, labels: np.ndarray, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) with weight @ e + bias whitening `embeddings` (N, D) grouped by `labels`;
    `shrinkage` in (0, 1) is the share of the covariance replaced by its mean variance."""
    if not 0 < shrinkage < 1:
        raise ValueError("shrinkage must be in (0, 1)")
    x = np.asarray(embeddings, dtype=np.float64)
    centred = np.empty_like(x)
    for label in np.unique(labels):
        members = labels == label
        centred[members] = x[members] - x[members].mean(axis=0)
    within = centred.T @ centred / len(x)
    dim = within.shape[0]
    shrunk = (1 - shrinkage) * within + shrinkage * np.trace(within) / dim * np.eye(dim)
    variances, axes = np.linalg.eigh(shrunk)
    weight = axes @ np.diag(variances**-0.5) @ axes.T
    bias = -weight @ x.mean(axis=0)
    return weight.astype(np.float32), bias.astype(np.float32)
