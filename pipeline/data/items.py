"""One file of a data set, as the producer, trainer and benchmarks see it."""

from dataclasses import dataclass
from pathlib import Path

from schemas.items import Modality


@dataclass(frozen=True)
class DataItem:
    """A file plus the names it travels under.

    `label` is the identity (the person, the speaker): what "same" means for a pair; None
    for an unlabelled file of one's own, which is indexed but not trained on.
    `group` is the unit a held-out split is drawn by, so that nothing a test item
    shares with training can leak: the person for faces, the spoken word for speech
    (test words are then never heard in training, by any voice).
    """

    id: str
    modality: Modality
    label: str | None
    group: str
    path: Path
    # Speech only: the prompt's path relative to its voice folder, e.g. "digits/7".
    word: str | None = None

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()
