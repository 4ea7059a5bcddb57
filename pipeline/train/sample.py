"""The unit of training and evaluation data."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """A decoded, labelled item. `group` decides the split (person for faces, word for speech)."""

    id: str
    label: str
    group: str
    x: np.ndarray
