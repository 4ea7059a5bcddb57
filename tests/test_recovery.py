"""Actors that die mid-stream are restarted by Ray and lose or duplicate nothing.

Either an ingest actor or an index shard is killed (as by kill -9) at a random
point of the stream, several times: after a random share of the items is
indexed, so sometimes mid-batch, sometimes between batches. Some items are
updated (same key, other bytes) after their first version, and must end up with
the vector of their newest bytes. A restarted ingest actor takes its old place in the
consumer group under its instance id: the group never counts a dead member.
"""

import random
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import pytest
import ray
from ray.actor import ActorHandle

from pipeline.data.items import DataItem
from pipeline.embed.model import EmbeddingModel
from pipeline.index.handles import every_replica, ingest_name
from pipeline.ingest.worker import CONSUMER_GROUP
from pipeline.inputs import decode
from pipeline.kafka.clients import headers, make_producer
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from schemas.items import ITEM_TOPICS, Modality
from services.stack import Stack
from tests.fixtures_kafka import group_members
from tests.fixtures_stack import delete_and_wait

ROUNDS = 3
ITEMS = 100
UPDATE_EVERY = 10
RECOVERY_TIMEOUT_S = 180

VICTIMS: dict[str, Callable[[Stack], list[ActorHandle]]] = {
    "ingest-actor": lambda stack: list(stack.workers),
    "index-shard": lambda stack: stack.holders[Modality.FACE][0][:1],
}


def _produce_slowly(settings: Settings, stream: list[tuple[str, DataItem]]) -> None:
    producer = make_producer(settings)
    for i, (item_id, face) in enumerate(stream):
        producer.send(
            ITEM_TOPICS[Modality.FACE],
            key=item_id.encode(),
            value=face.read_bytes(),
            headers=headers(modality="face", label=face.label),
        )
        if i % 10 == 0:
            producer.flush()
            time.sleep(0.3)
    producer.flush()
    producer.close()


def _wait_until_back(actors: list[ActorHandle]) -> None:
    """A restarting actor refuses calls; a killed holder is back once it answers again."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    for actor in actors:
        while True:
            try:
                ray.get(actor.__ray_call__.remote(lambda _: None))
                break
            except ray.exceptions.ActorUnavailableError:
                assert time.monotonic() < deadline, "the killed actor did not come back"
                time.sleep(0.5)


def _vectors(stack: Stack, version: str, ids: list[str]) -> list:
    """Each id's (vector, label) from whichever face shard holds it."""
    shards = [
        ray.get([h.vector.remote(version, i) for i in ids])
        for h in every_replica(stack.holders[Modality.FACE])
    ]
    return [next((f for f in found if f is not None), None) for found in zip(*shards, strict=True)]


@pytest.mark.parametrize("victim", list(VICTIMS))
def test_killed_actor_recovers_every_item_exactly_once(stack, stack_settings, demo_data, victim):
    faces = demo_data.held_out[Modality.FACE]
    store = MetadataStore.from_settings(stack_settings)
    record = store.active_model(Modality.FACE)
    model = EmbeddingModel.from_record(record, ModelArtifacts(store, stack_settings.models_dir))
    rng = random.Random(int(time.time()))
    size_before = stack.index_size(Modality.FACE)
    for _ in range(ROUNDS):
        ids = [f"recovery/{uuid.uuid4().hex[:8]}/{i}" for i in range(ITEMS)]
        stream = [(item_id, faces[i % len(faces)]) for i, item_id in enumerate(ids)]
        # Updates: the same keys again with another face, later in the log.
        stream += [(item_id, faces[(i + 1) % len(faces)]) for i, item_id in enumerate(ids)][
            ::UPDATE_EVERY
        ]
        newest = dict(stream)
        producer = threading.Thread(target=_produce_slowly, args=(stack_settings, stream))
        producer.start()
        kill_after = rng.randint(1, ITEMS // 2)
        while ITEMS - len(stack.missing(Modality.FACE, ids)) < kill_after:
            time.sleep(0.02)
        victims = VICTIMS[victim](stack)
        for actor in victims:
            ray.kill(actor, no_restart=False)  # the process dies at once, like kill -9
        producer.join()
        _wait_until_back(victims)

        stack.wait_indexed({Modality.FACE: ids}, RECOVERY_TIMEOUT_S)
        members = sorted(
            str(instance) for instance, _ in group_members(stack_settings, CONSUMER_GROUP)
        )
        assert members == [ingest_name(i) for i in range(len(stack.workers))]
        assert stack.index_size(Modality.FACE) == size_before + ITEMS  # each exactly once
        expected = model.embed(
            np.stack([decode(model.config.input, newest[i].read_bytes()) for i in ids])
        )
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while True:
            held = _vectors(stack, record.version, ids)
            stale = [
                item_id
                for item_id, got, want in zip(ids, held, expected, strict=True)
                if not np.allclose(got[0], want, atol=1e-4)
            ]
            if not stale or time.monotonic() > deadline:
                break
            time.sleep(1)  # the updates come last in the log: they may still be on their way
        assert not stale, f"{len(stale)} items do not carry their newest vector"

        delete_and_wait(stack, stack_settings, {Modality.FACE: ids})
        assert stack.index_size(Modality.FACE) == size_before
