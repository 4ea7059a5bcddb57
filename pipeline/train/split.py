"""Group-disjoint held-out split.

Held-out metrics only mean something for unseen groups: a person whose other photos were
trained on, or a word the network heard from every speaker, would make the threshold look
better than it is on new data. So whole groups go to one side, never single samples or pairs.
"""

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Grouped(Protocol):
    @property
    def group(self) -> str: ...


T = TypeVar("T", bound=Grouped)


def split_by_group(
    samples: Sequence[T], held_out_fraction: float, seed: int
) -> tuple[list[T], list[T]]:
    """(train, held_out): about held_out_fraction of the groups held out, at least one per side.

    Deterministic for a seed and independent of sample order; each side keeps input order.
    """
    groups = sorted({s.group for s in samples})
    if len(groups) < 2:
        raise ValueError(f"need at least two groups to hold one out, got {len(groups)}")
    random.Random(seed).shuffle(groups)
    n_held = min(max(round(held_out_fraction * len(groups)), 1), len(groups) - 1)
    held = set(groups[:n_held])
    return [s for s in samples if s.group not in held], [s for s in samples if s.group in held]
