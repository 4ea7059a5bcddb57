"""The evaluation protocols: which items a model is trained on and which it is tested on.

Every protocol splits by group, never by item or pair, so a test identity (faces) or a test
word (speech) is never seen in training. The book's protocol drew test pairs from the people
it trained on; its figure measures memory, these measure recognition of the unseen.
"""

import dataclasses
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.data.asterisk import common_words, iter_asterisk
from pipeline.data.framed import iter_framed_orl
from pipeline.data.orl import iter_orl
from pipeline.data.speakers import iter_speakers
from pipeline.embed.config import TrainConfig
from pipeline.train.job import item_samples
from pipeline.train.sample import Sample
from schemas.items import Modality

FOLDS = 4
SEED = 0
# The same-word task compares the two Italian voices: within one language a word match is
# about phonetic content, not (as across languages) mostly about utterance length.
ITALIAN_VOICES = ("it_IT_m_Carlo", "it_IT_f_Menardi")


@dataclass(frozen=True)
class Fold:
    index: int
    train: list[Sample]
    test: list[Sample]


@dataclass(frozen=True)
class Task:
    """One recognition task: its folds, what "same" means, and how training batches must be
    shaped for it (`train_overrides` on the modality's TrainConfig)."""

    name: str
    modality: Modality
    same_means: str
    split_by: str
    folds: list[Fold]
    train_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Epochs are passes over the task's training side; a task with far fewer items than the
    # modality's service data gets this many times the preset's epochs, so every preset
    # (quick, default) keeps its relative length.
    epochs_factor: int = 1

    def train_config(self, preset: TrainConfig) -> TrainConfig:
        """The modality's preset as this task trains it."""
        shaped = dataclasses.replace(preset, **self.train_overrides)
        return dataclasses.replace(shaped, epochs=shaped.epochs * self.epochs_factor)


def describe(task: Task) -> dict[str, Any]:
    """What a report says about a task: enough to know what its numbers mean."""
    return {
        "name": task.name,
        "same_means": task.same_means,
        "split_by": task.split_by,
        "test_items_per_fold": [len(fold.test) for fold in task.folds],
        "test_groups_per_fold": [len({s.group for s in fold.test}) for fold in task.folds],
        "train_overrides": task.train_overrides,
        "epochs_factor": task.epochs_factor,
    }


def group_folds(samples: Sequence[Sample], folds: int, seed: int) -> list[Fold]:
    """`folds` folds over the sorted, seeded-shuffled groups; each group is tested once.

    Each side keeps input order, so a fold is the same whatever machine or order built it.
    """
    groups = sorted({s.group for s in samples})
    if len(groups) < folds:
        raise ValueError(f"{folds} folds need at least {folds} groups, got {len(groups)}")
    random.Random(seed).shuffle(groups)
    result = []
    for index, chunk in enumerate(np.array_split(np.array(groups, dtype=object), folds)):
        held = set(chunk)
        result.append(
            Fold(
                index,
                train=[s for s in samples if s.group not in held],
                test=[s for s in samples if s.group in held],
            )
        )
    return result


def fewer_training_groups(task: Task, groups: int, seed: int) -> Task:
    """`task` with each fold trained on `groups` of its training groups, its tests untouched.

    A learning curve is this at several sizes: how much recognition of the same unseen test
    identities owes to the number of identities seen in training, which no recipe adds.
    """
    folds = []
    for fold in task.folds:
        available = sorted({s.group for s in fold.train})
        if not 2 <= groups <= len(available):
            raise ValueError(f"a fold has {len(available)} training groups, asked for {groups}")
        kept = set(random.Random(f"{seed}/{fold.index}").sample(available, groups))
        folds.append(dataclasses.replace(fold, train=[s for s in fold.train if s.group in kept]))
    return dataclasses.replace(task, folds=folds)


def face_task(folds: int = FOLDS, seed: int = SEED, input_name: str | None = None) -> Task:
    """ORL: 40 people, 4 folds of 30 training / 10 unseen test people. Every task decodes its
    items as `input_name` (pipeline/inputs.py; by default as the service's encoder does)."""
    samples = item_samples(Modality.FACE, iter_orl(), input_name=input_name)
    return Task(
        "face",
        Modality.FACE,
        same_means="same person",
        split_by="person",
        folds=group_folds(samples, folds, seed),
    )


def framed_face_task(folds: int = FOLDS, seed: int = SEED, input_name: str | None = None) -> Task:
    """The face task with every test shot placed in a larger frame (pipeline/data/framed.py)
    and the training sides as they are: what a photo that is not a face crop costs."""
    task = face_task(folds, seed, input_name)
    framed = {
        s.id: s for s in item_samples(Modality.FACE, iter_framed_orl(), input_name=input_name)
    }
    return dataclasses.replace(
        task,
        name="face-framed",
        folds=[
            dataclasses.replace(fold, test=[framed[s.id] for s in fold.test]) for fold in task.folds
        ],
    )


def speaker_task(
    folds: int = FOLDS,
    seed: int = SEED,
    words: Collection[str] | None = None,
    input_name: str | None = None,
) -> Task:
    """Asterisk speech, identity = speaker (Allison's two languages are one speaker), split by
    spoken word: test words are never heard in training, in any voice. `words` narrows the
    set (tests); by default every usable prompt is in."""
    samples = item_samples(Modality.AUDIO, iter_asterisk(words=words), input_name=input_name)
    return Task(
        "speaker",
        Modality.AUDIO,
        same_means="same speaker",
        split_by="word",
        folds=group_folds(samples, folds, seed),
    )


def unseen_speaker_task(
    folds: int = FOLDS, seed: int = SEED, input_name: str | None = None
) -> Task:
    """Every speaker of pipeline/data/speakers.py (the demo voices and the other packaged
    ones), identity = speaker, split by speaker: test voices are never heard in training.
    1-shot is N-way over a fold's test speakers."""
    samples = item_samples(Modality.AUDIO, iter_speakers(), input_name=input_name)
    by_speaker = [dataclasses.replace(sample, group=sample.label) for sample in samples]
    return Task(
        "speaker-unseen",
        Modality.AUDIO,
        same_means="same speaker",
        split_by="speaker",
        folds=group_folds(by_speaker, folds, seed),
    )


def italian_word_task(
    folds: int = FOLDS,
    seed: int = SEED,
    words: Collection[str] | None = None,
    input_name: str | None = None,
) -> Task:
    """ "Same word?" between the two Italian voices, identity = word, split by word.

    Only words every voice has are used (`words` narrows them further), so every word has
    exactly one recording per Italian voice: a genuine pair is always Carlo against Menardi,
    and batches hold two samples of many words.
    """
    common = set(common_words())
    words = common if words is None else common & set(words)
    items = [item for item in iter_asterisk(words=words) if item.id.split("/")[1] in ITALIAN_VOICES]
    samples = [
        dataclasses.replace(sample, label=sample.group)
        for sample in item_samples(Modality.AUDIO, items, input_name=input_name)
    ]
    return Task(
        "italian-word",
        Modality.AUDIO,
        same_means="same word",
        split_by="word",
        folds=group_folds(samples, folds, seed),
        # Two voices, so two samples a word.
        train_overrides={"identities_per_batch": 32, "samples_per_identity": 2},
        # The ~570 clips a fold trains on make 8 batches an epoch against the speaker task's
        # 49: at the preset's epochs the word task would get a sixth of the speaker's steps.
        epochs_factor=2,
    )


TASKS = {
    "face": face_task,
    "face-framed": framed_face_task,
    "speaker": speaker_task,
    "speaker-unseen": unseen_speaker_task,
    "italian-word": italian_word_task,
}
MODALITY_TASKS: dict[Modality, tuple[str, ...]] = {
    Modality.FACE: ("face", "face-framed"),
    Modality.AUDIO: ("speaker", "speaker-unseen", "italian-word"),
}
