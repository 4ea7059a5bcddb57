"""A training run end to end: gather labelled samples, train, register (the artifact's bytes
in the database, a copy under the models directory), activate.

The CLI, `make run`'s first start and (later) the scheduler all go through
`train_and_register`, so every model version is produced and recorded the same way.
"""

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from pipeline.data.demo import demo_items
from pipeline.data.items import DataItem
from pipeline.embed.config import ENCODERS, preset_config
from pipeline.inputs import decode
from pipeline.kafka.readback import fill_missing
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore, VersionExistsError
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ModelRecord
from pipeline.train.sample import Sample
from pipeline.train.trainer import TrainResult, train_model
from schemas.items import Modality

Progress = Callable[[float, str], None]
# The record's `metrics` key of the held-out curve: {"far": [...], "frr": [...]}, FAR rising.
CURVE_KEY = "held_out_curve"


def split_group(modality: Modality, item_id: str, label: str) -> str:
    """What a held-out split keeps together.

    Faces: the person, so thresholds are calibrated on unseen people. Speech has
    only a handful of speakers, so it is split by utterance instead: ids are
    `<source>/<voice>/<utterance>` and the utterance (e.g. `digits/7`) is the group,
    so calibration words are never heard in training.
    """
    if modality is Modality.FACE:
        return label
    return item_id.split("/", 2)[-1]


def _excluded(item_id: str, exclude: Sequence[str]) -> bool:
    return any(fnmatchcase(item_id, pattern) for pattern in exclude)


def _samples(
    modality: Modality,
    items: Iterable[tuple[str, str, bytes]],
    exclude: Sequence[str],
    input_name: str | None,
) -> list[Sample]:
    """Decoded as `input_name` (pipeline/inputs.py), by default as the service's encoder takes
    its input."""
    name = input_name or ENCODERS[modality].input
    return [
        Sample(item_id, label, split_group(modality, item_id, label), decode(name, payload))
        for item_id, label, payload in items
        if not _excluded(item_id, exclude)
    ]


def stored_samples(
    settings: Settings, store: MetadataStore, modality: Modality, exclude: Sequence[str] = ()
) -> list[Sample]:
    """Labelled items the stream has brought, read back from payload retention (bytes this
    node lacks from the item topics): the newest `RETRAIN_MAX_ITEMS` of them."""
    payloads = PayloadStore(settings.payloads_dir)
    window = store.items_with_payload(
        modality, labelled_only=True, newest=settings.retrain_max_items
    )
    fill_missing(settings, payloads, window)
    return _samples(
        modality,
        (
            (item.item_id, item.label, payloads.get(item.payload_sha256))
            for item in window
            if item.label is not None
            and item.payload_sha256 is not None
            # Gone from the topic too: replaced by bytes that are not indexed yet, or deleted.
            and item.payload_sha256 in payloads
        ),
        exclude,
        None,
    )


def item_samples(
    modality: Modality,
    items: Iterable[DataItem],
    exclude: Sequence[str] = (),
    input_name: str | None = None,
) -> list[Sample]:
    """Data-set items read from disk: how first models exist before anything was streamed."""
    items = ((i.id, i.label, i.read_bytes()) for i in items)
    return _samples(modality, items, exclude, input_name)


def demo_samples(modality: Modality) -> list[Sample]:
    return item_samples(modality, demo_items(modality))


@dataclass(frozen=True)
class RegisteredRun:
    record: ModelRecord
    result: TrainResult


def train_and_register(
    settings: Settings,
    store: MetadataStore,
    modality: Modality,
    samples: list[Sample],
    *,
    activate: bool,
    progress: Progress | None = None,
    pairs: Sequence[tuple[int, int, bool]] = (),
    preset: str | None = None,
) -> RegisteredRun:
    """`pairs` are explicit labelled pairs as positions into `samples`; `preset` overrides
    the service's TRAIN_PRESET. The trained model and its held-out identities come back
    with the record."""
    encoder_config = ENCODERS[modality]
    train_config = preset_config(
        modality, preset or settings.train_preset, settings.train_overrides
    )
    result = train_model(samples, encoder_config, train_config, progress, pairs)
    artifacts = ModelArtifacts(store, settings.models_dir)
    while True:
        # Two trainers of one modality may race for the next number; the loser renumbers.
        result.model.version = store.next_version(modality)
        artifact = result.model.to_bytes()
        sha256 = hashlib.sha256(artifact).hexdigest()
        try:
            record = store.register_model(
                ModelRecord(
                    version=result.model.version,
                    modality=modality,
                    config={
                        "encoder": result.model.config.to_dict(),
                        "train": train_config.to_dict(),
                    },
                    metrics=result.metrics
                    | {"counts": result.counts, CURVE_KEY: result.held_out_curve},
                    threshold=result.threshold,
                    energy=encoder_config.energy,
                    # Where this node keeps its copy; other nodes fetch the bytes stored here.
                    artifact_path=str(artifacts.cache_path(sha256)),
                    artifact_sha256=sha256,
                    active=activate,
                ),
                artifact,
            )
        except VersionExistsError:
            continue
        artifacts.keep(artifact)
        return RegisteredRun(record, result)
