"""Training batches: P identities × K samples each, turned into labelled (X1, X2, Y) pairs.

Sampling by identity guarantees every batch holds genuine pairs (random batches over 40
people would hold almost none); encoding the batch once and pairing every two members gives
the paper's (X1, X2, Y) pairs at the cost of one forward pass. Explicit labelled pairs (pair
feedback) ride along in the same batches with their own Y.

A P×K batch holds far more impostor pairs than genuine ones, and most impostors are already
beyond the margin (zero loss), so averaging over all of them mostly dilutes the gradient.
`balanced_hard_pairs` picks which pairs the loss sees; the loss formula itself never changes.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Samples to encode and the pairs among them, by position in `indices`.

    `explicit` marks the pairs that came as labelled feedback rather than from labels.
    """

    indices: np.ndarray
    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    explicit: np.ndarray


def in_batch_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (i, j), i < j, of a batch, with Y = whether their labels agree."""
    first, second = np.triu_indices(len(labels), k=1)
    return first, second, labels[first] == labels[second]


class PairBatches:
    """One epoch of batches per iteration; seeded, so a run reproduces its batches."""

    def __init__(
        self,
        labels: Sequence[str],
        identities_per_batch: int,
        samples_per_identity: int,
        seed: int,
        pairs: Sequence[tuple[int, int, bool]] = (),
    ) -> None:
        self.labels = np.asarray(labels)
        names, codes = np.unique(self.labels, return_inverse=True)
        self.members = [np.flatnonzero(codes == c) for c in range(len(names))]
        self.p = min(identities_per_batch, len(names))
        self.k = samples_per_identity
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
        ends = self.pairs[:, :2]
        if len(ends) and (ends.min() < 0 or ends.max() >= len(labels)):
            raise IndexError("an explicit pair refers to a sample that does not exist")
        batch_size = self.p * self.k
        self.n_batches = max(len(labels) // batch_size, math.ceil(len(self.pairs) / batch_size), 1)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[Batch]:
        order = self.rng.permutation(len(self.pairs))
        for chunk in np.array_split(order, self.n_batches):
            yield self._batch(self.pairs[chunk])

    def _batch(self, explicit: np.ndarray) -> Batch:
        chosen = self.rng.choice(len(self.members), size=self.p, replace=False)
        identity = np.concatenate(
            [
                self.rng.choice(m, size=min(self.k, len(m)), replace=False)
                for m in (self.members[c] for c in chosen)
            ]
        )
        first, second, same = in_batch_pairs(self.labels[identity])
        n, m = len(identity), len(explicit)
        return Batch(
            indices=np.concatenate([identity, explicit[:, 0], explicit[:, 1]]),
            first=np.concatenate([first, np.arange(n, n + m)]),
            second=np.concatenate([second, np.arange(n + m, n + 2 * m)]),
            same=np.concatenate([same, explicit[:, 2].astype(bool)]),
            explicit=np.arange(len(first) + m) >= len(first),
        )


def balanced_hard_pairs(energies: np.ndarray, batch: Batch) -> np.ndarray:
    """Positions of the pairs to train on: every genuine and every explicit pair, plus as many
    in-batch impostors as there are genuine in-batch pairs, closest (hardest) first."""
    mineable = ~batch.same & ~batch.explicit
    n_genuine = int((batch.same & ~batch.explicit).sum())
    candidates = np.flatnonzero(mineable)
    hardest = candidates[np.argsort(energies[candidates], kind="stable")[:n_genuine]]
    return np.sort(np.concatenate([np.flatnonzero(~mineable), hardest]))


def random_pairs(labels: Sequence[str], n_pairs: int, seed: int) -> list[tuple[int, int, bool]]:
    """`n_pairs` labelled pairs drawn as the book does: half genuine (two different shots of a
    random identity), half impostor (one shot each of two random identities)."""
    labels_array = np.asarray(labels)
    names, codes = np.unique(labels_array, return_inverse=True)
    members = [np.flatnonzero(codes == c) for c in range(len(names))]
    with_pairs = [m for m in members if len(m) >= 2]
    if not with_pairs or len(names) < 2:
        raise ValueError("random pairs need two identities and one with two samples")
    rng = np.random.default_rng(seed)
    pairs = []
    for n in range(n_pairs):
        if n % 2 == 0:
            a, b = rng.choice(with_pairs[rng.integers(len(with_pairs))], size=2, replace=False)
            pairs.append((int(a), int(b), True))
        else:
            x, y = rng.choice(len(members), size=2, replace=False)
            pairs.append((int(rng.choice(members[x])), int(rng.choice(members[y])), False))
    return pairs


class RandomPairBatches:
    """The book's batches: a fixed set of random labelled pairs (plus any explicit ones),
    reshuffled every epoch and fed `pairs_per_batch` at a time. Seeded like PairBatches."""

    def __init__(
        self,
        labels: Sequence[str],
        n_pairs: int,
        pairs_per_batch: int,
        seed: int,
        pairs: Sequence[tuple[int, int, bool]] = (),
    ) -> None:
        drawn = random_pairs(labels, n_pairs, seed)
        self.pairs = np.asarray([*drawn, *pairs], dtype=np.int64).reshape(-1, 3)
        self.n_batches = max(math.ceil(len(self.pairs) / pairs_per_batch), 1)
        self.rng = np.random.default_rng(seed + 1)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[Batch]:
        order = self.rng.permutation(len(self.pairs))
        for chunk in np.array_split(order, self.n_batches):
            pairs = self.pairs[chunk]
            m = len(pairs)
            yield Batch(
                indices=np.concatenate([pairs[:, 0], pairs[:, 1]]),
                first=np.arange(m),
                second=np.arange(m, 2 * m),
                same=pairs[:, 2].astype(bool),
                explicit=np.ones(m, dtype=bool),
            )
