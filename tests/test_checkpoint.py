"""The checkpoint protocol's order on a real disk and a real broker: offsets applied, then
written with the index as one snapshot, and only then committed to the consumer group."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from pipeline.index.checkpoint import Checkpoint, DurableOffsets, GroupCommit, OffsetsWentBackwards
from pipeline.index.snapshot import read_latest_snapshot
from pipeline.index.vector_index import VectorIndex
from pipeline.kafka.clients import make_admin, make_consumer
from pipeline.settings import Settings

DIM = 4
HOUR_S = 3600.0


@pytest.fixture
def index() -> VectorIndex:
    index = VectorIndex(DIM, 0)
    index.upsert(["a", "b"], np.eye(DIM, dtype=np.float32)[:2], ["x", None])
    return index


def checkpoint(directory: Path, index: VectorIndex, every: int, interval_s: float = HOUR_S):
    return Checkpoint(directory, interval_s, every, {}, lambda: ("face-v1", index))


def test_offsets_become_durable_only_with_the_snapshot_that_covers_them(tmp_path, index):
    steps = checkpoint(tmp_path, index, every=3)

    steps.record({0: 1}, 1)
    assert steps.applied() == {0: 1}
    assert steps.durable() == DurableOffsets({})
    assert read_latest_snapshot(tmp_path) is None

    # The third operation makes it due: the snapshot holds the index and exactly these offsets.
    steps.record({0: 2, 1: 4}, 2)
    written = read_latest_snapshot(tmp_path)
    assert written is not None
    assert written.model_version == "face-v1"
    assert written.offsets == {0: 2, 1: 4}
    assert len(written.index) == 2
    assert steps.durable() == DurableOffsets({0: 2, 1: 4})
    assert steps.stats()["checkpoint_age_s"] == 0.0

    # Nothing applied since: nothing to write.
    assert steps.make_durable() is None


def test_offsets_that_go_backwards_are_refused_and_change_nothing(tmp_path, index):
    steps = checkpoint(tmp_path, index, every=100)
    steps.record({0: 5, 1: 2}, 1)

    with pytest.raises(OffsetsWentBackwards):
        steps.record({0: 4, 1: 3}, 1)
    assert steps.applied() == {0: 5, 1: 2}

    # Standing still is not going back; a change outside the log records no offsets at all.
    steps.record({0: 5}, 1)
    steps.record({}, 1)
    assert steps.applied() == {0: 5, 1: 2}
    assert steps.make_durable() is not None
    assert read_latest_snapshot(tmp_path).offsets == {0: 5, 1: 2}


def test_an_elapsed_interval_makes_the_next_record_durable(tmp_path, index):
    steps = checkpoint(tmp_path, index, every=100, interval_s=0.0)
    assert not steps.due()
    steps.record({0: 7}, 1)
    assert steps.durable() == DurableOffsets({0: 7})
    assert read_latest_snapshot(tmp_path).offsets == {0: 7}


def test_a_restart_resumes_from_what_was_durable(tmp_path, index):
    checkpoint(tmp_path, index, every=1).record({0: 3}, 1)
    restored = read_latest_snapshot(tmp_path)

    again = Checkpoint(tmp_path, HOUR_S, 100, restored.offsets, lambda: ("face-v1", index))
    assert again.applied() == {0: 3} and again.durable() == DurableOffsets({0: 3})
    with pytest.raises(OffsetsWentBackwards):
        again.record({0: 2}, 1)


@pytest.fixture
def topic(kafka_settings: Settings) -> str:
    name = f"test.checkpoint.{uuid.uuid4().hex[:8]}"
    with make_admin(kafka_settings) as admin:
        admin.create_topics({name: {"num_partitions": 2}}, wait_for_metadata=True)
    return name


@pytest.fixture
def consumer(kafka_settings: Settings, topic: str) -> Iterator[KafkaConsumer]:
    consumer = make_consumer(kafka_settings, group_id=f"test-checkpoint-{uuid.uuid4().hex[:8]}")
    try:
        yield consumer
    finally:
        consumer.close()


def test_the_group_commits_only_what_a_snapshot_covers(tmp_path, index, topic, consumer):
    held, elsewhere = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer.assign([held])
    steps = checkpoint(tmp_path, index, every=3)
    commits = GroupCommit()

    steps.record({0: 2, 1: 1}, 2)
    commits.stage(topic, steps.durable())
    commits.commit(consumer)
    assert consumer.committed(held) is None

    steps.record({0: 3, 1: 1}, 1)
    commits.stage(topic, steps.durable())
    commits.commit(consumer)
    assert consumer.committed(held) == 3
    # A partition another member holds is left to it.
    assert consumer.committed(elsewhere) is None

    # A commit drains what was staged: it is not committed a second time.
    consumer.commit({held: OffsetAndMetadata(1, "", -1)})
    commits.commit(consumer)
    assert consumer.committed(held) == 1
