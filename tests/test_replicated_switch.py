"""A model switch over replicated shards: every replica of every shard builds the new version
from the stored payloads and all flip together, after which each replica holds its shard's
items by the new version and searches them (real Ray actors, FAISS, SQLite and a quickly
trained model; every payload is on this node, so no Kafka read is needed)."""

from pathlib import Path

import numpy as np
import pytest
import ray

from pipeline.data.orl import iter_orl
from pipeline.embed.model import EmbeddingModel
from pipeline.index.holder import IndexHolder
from pipeline.inputs import decode
from pipeline.retrain.rebuild import rebuild_and_switch
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from pipeline.store.payloads import PayloadStore
from pipeline.store.records import ItemRecord
from pipeline.store.retention import RetainedItems
from pipeline.train.job import item_samples, train_and_register
from schemas.items import ITEM_TOPICS, Modality

SHARDS, REPLICAS, PARTITIONS = 2, 2, 4
# Ten people: training holds two out to score the model.
PEOPLE = {f"s{n}" for n in range(1, 11)}


@pytest.mark.usefixtures("stack")
def test_every_replica_builds_the_new_version_and_all_flip_together(tmp_path: Path):
    settings = Settings(
        state_dir=tmp_path, train_preset="quick", index_shards=SHARDS, index_replicas=REPLICAS
    )
    store = MetadataStore.from_settings(settings)
    faces = [f for f in iter_orl() if f.label in PEOPLE]
    samples = item_samples(Modality.FACE, faces)
    old = train_and_register(settings, store, Modality.FACE, samples, activate=True).record
    new = train_and_register(settings, store, Modality.FACE, samples, activate=False).record
    # The items as ingest would have retained them, spread over the partitions.
    records, payloads = [], {}
    for n, face in enumerate(faces):
        data = face.read_bytes()
        payloads[PayloadStore.address(data)] = data
        records.append(
            ItemRecord(
                modality=Modality.FACE,
                item_id=face.id,
                label=face.label,
                payload_sha256=PayloadStore.address(data),
                content_type="image/png",
                source_topic=ITEM_TOPICS[Modality.FACE],
                source_partition=n % PARTITIONS,
                source_offset=n // PARTITIONS,
            )
        )
    RetainedItems(store, PayloadStore(settings.payloads_dir)).upsert(records, payloads)
    shards = [
        [
            ray.remote(IndexHolder).options(num_cpus=0).remote(settings, Modality.FACE, s, r)
            for r in range(REPLICAS)
        ]
        for s in range(SHARDS)
    ]
    every = [replica for replicas in shards for replica in replicas]
    try:
        assert set(ray.get([r.active_version.remote() for r in every])) == {old.version}
        model = EmbeddingModel.from_record(new, ModelArtifacts(store, settings.models_dir))
        assert rebuild_and_switch(settings, store, shards, model) == old.version
        assert set(ray.get([r.active_version.remote() for r in every])) == {new.version}
        assert store.active_model(Modality.FACE).version == new.version
        for shard, replicas in enumerate(shards):
            owned = [r.item_id for r in records if r.source_partition % SHARDS == shard]
            for replica in replicas:
                assert ray.get(replica.size.remote()) == len(owned)
                assert ray.get(replica.contains.remote(owned)) == [True] * len(owned)
        # A face finds itself in each replica of its shard, by the new version.
        face, record = faces[5], records[5]
        query = model.embed(decode(model.config.input, face.read_bytes())[np.newaxis])
        for replica in shards[record.source_partition % SHARDS]:
            [hits] = ray.get(replica.search.remote(new.version, query, 1, None))
            assert hits[0].item_id == face.id
    finally:
        for replica in every:
            ray.kill(replica, no_restart=True)
