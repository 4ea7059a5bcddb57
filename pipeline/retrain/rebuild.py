"""Re-embed every retained item for a model version and switch the index to it.

Every shard of the index (each of its replicas) starts a second index and, from that moment,
asks every ingest actor for vectors of both versions; this module fills in everything that
was indexed before, from the payloads the store retains (bytes this node lacks are read back
from the item topics), each item into the shard owning the partition it came from. Whatever
the stream upserts or deletes meanwhile wins over the backfill. When every shard replica has
its build, the store and all of them switch, and once the switch returns (every API
replica's copies have it) every query is answered by the new version; a query meeting shards
mid-flip is answered again, wholly by the new one (services/api/routing.py).
"""

from collections.abc import Callable

import numpy as np
import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from pipeline.decode.errors import DecodeError
from pipeline.embed.model import EmbeddingModel
from pipeline.index.handles import Shards, every_replica
from pipeline.index.shard_map import ShardMap
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
    shards: Shards,
    model: EmbeddingModel,
    progress: Progress | None = None,
) -> str:
    """The version switched away from."""
    modality = model.config.modality
    owner = ShardMap(len(shards)).owner
    replicas = every_replica(shards)
    ray.get([r.begin_build.remote(model.version, model.embedding_dim) for r in replicas])
    try:
        payloads = PayloadStore(settings.payloads_dir)
        items = store.items_with_payload(modality)
        fill_missing(settings, payloads, items)
        for start in range(0, len(items), CHUNK):
            kept, inputs = [], []
            for item in items[start : start + CHUNK]:
                try:
                    inputs.append(
                        decode(model.config.input, payloads.get(item.payload_sha256 or ""))
                    )
                except (OSError, DecodeError):
                    # Deleted since the listing: its tombstone reaches the new index live.
                    continue
                kept.append(item)
            if kept:
                vectors = model.embed(np.stack(inputs))
                # Each item goes to the shard owning the partition it was read from.
                rows: dict[int, list[int]] = {}
                for row, item in enumerate(kept):
                    rows.setdefault(owner(item.source_partition), []).append(row)
                ray.get(
                    [
                        replica.backfill.remote(
                            model.version,
                            [kept[r].item_id for r in shard_rows],
                            vectors[shard_rows],
                            [kept[r].label for r in shard_rows],
                        )
                        for shard, shard_rows in rows.items()
                        for replica in shards[shard]
                    ]
                )
            if progress:
                progress(min(start + CHUNK, len(items)) / max(len(items), 1))
        if not all(ray.get([r.built.remote(model.version) for r in replicas])):
            # A shard replica restarted during the build and lost it: flip none.
            raise RuntimeError(f"an index shard lost the build of {model.version}; try again")
        return switch_active(
            store, modality, model.version, lambda v: _activate_everywhere(replicas, v)
        )
    except BaseException:
        for replica in replicas:
            replica.abandon_build.remote(model.version)
        raise


def _activate_everywhere(shards: list[ActorHandle], version: str) -> str:
    """Flip every shard replica at once (each flip swaps the searched index); returns the version
    before. Every shard has the build, so only a shard dying mid-flip fails, and Ray restarts
    it at the store's active version, which is `version` by then."""
    refs = [shard.activate_everywhere.remote(version) for shard in shards]
    previous = []
    for shard, ref in zip(shards, refs, strict=True):
        try:
            previous.append(ray.get(ref))
        except RayActorError:
            if ray.get(shard.active_version.remote()) != version:
                raise
    return previous[0] if previous else version


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
