"""Re-embed every retained item for a model version and switch the index to it.

The holder starts a second index and, from that moment, asks every ingest actor for vectors
of both versions; this module fills in everything that was indexed before, from the payloads
the store retains (bytes this node lacks are read back from the item topics). Whatever the
stream upserts or deletes meanwhile wins over the backfill. When the backfill is done the
store and the holder switch, and once the switch returns
(every API replica's copy of the index has it) every query is answered by the new version.
"""

from collections.abc import Callable

import numpy as np
import ray
from ray.actor import ActorHandle

from pipeline.decode.errors import DecodeError
from pipeline.embed.model import EmbeddingModel
from pipeline.inputs import decode
from pipeline.kafka.readback import fill_missing
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from schemas.items import Modality

CHUNK = 128
Progress = Callable[[float], None]


def rebuild_and_switch(
    settings: Settings,
    store: MetadataStore,
    holder: ActorHandle,
    model: EmbeddingModel,
    progress: Progress | None = None,
) -> str:
    """The version switched away from."""
    modality = model.config.modality
    ray.get(holder.begin_build.remote(model.version, model.embedding_dim))
    try:
        payloads = PayloadStore(settings.payloads_dir)
        items = store.items_with_payload(modality)
        fill_missing(settings, payloads, items)
        for start in range(0, len(items), CHUNK):
            ids, labels, inputs = [], [], []
            for item in items[start : start + CHUNK]:
                try:
                    inputs.append(
                        decode(model.config.input, payloads.get(item.payload_sha256 or ""))
                    )
                except (OSError, DecodeError):
                    # Deleted since the listing: its tombstone reaches the new index live.
                    continue
                ids.append(item.item_id)
                labels.append(item.label)
            if ids:
                vectors = model.embed(np.stack(inputs))
                ray.get(holder.backfill.remote(model.version, ids, vectors, labels))
            if progress:
                progress(min(start + CHUNK, len(items)) / max(len(items), 1))
        return switch_active(
            store, modality, model.version, lambda v: ray.get(holder.activate_everywhere.remote(v))
        )
    except BaseException:
        holder.abandon_build.remote(model.version)
        raise


def switch_active(
    store: MetadataStore, modality: Modality, version: str, activate: Callable[[str], str]
) -> str:
    """Store first, so a holder restarted mid-switch loads the new version; if `activate` (the
    holder's switch) fails, the store is put back, so the two never disagree."""
    before = store.active_model(modality)
    store.activate_model(version)
    try:
        return activate(version)
    except BaseException:
        if before is not None:
            store.activate_model(before.version)
        raise
