"""How the ingest consumer learns its partitions and notices it has none: the listener notes
assignments for the consuming thread (on the real broker), a consumer holding nothing for too
long is declared lost only when it should hold some, and readiness names a partition nobody
has held for longer than a rebalance takes."""

import time
import uuid

from kafka import TopicPartition

from pipeline.ingest.membership import AssignmentNotes, MembershipWatch
from pipeline.kafka.clients import make_admin, make_consumer
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, Modality
from services.api.readiness import Unheld

SHORT_S = 0.2


def test_the_listener_notes_what_the_group_assigned_for_the_consuming_thread(
    kafka_settings: Settings,
):
    topic = f"test.membership.{uuid.uuid4().hex[:8]}"
    with make_admin(kafka_settings) as admin:
        admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    notes = AssignmentNotes()
    consumer = make_consumer(kafka_settings, group_id=f"test-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic], listener=notes)
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        expected = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        assert consumer.assignment() == expected
        assert notes.take() == (expected, set())
        assert notes.take() == (set(), set())
    finally:
        consumer.close()


def test_a_partition_revoked_and_assigned_again_is_resumed():
    notes = AssignmentNotes()
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    notes.on_partitions_assigned([a, b])
    notes.on_partitions_revoked([a, b])
    notes.on_partitions_assigned([a])
    assert notes.take() == ({a}, {a, b})


def test_holding_nothing_is_lost_only_for_a_member_that_should_hold_something():
    watch = MembershipWatch(members=2, partitions=4, lost_after_s=SHORT_S)
    idle = MembershipWatch(members=5, partitions=4, lost_after_s=SHORT_S)
    assert not watch.lost(set()) and not idle.lost(set())
    time.sleep(SHORT_S * 1.5)
    assert watch.lost(set())
    assert not idle.lost(set())
    watch.rejoined()
    assert not watch.lost(set())
    time.sleep(SHORT_S * 1.5)
    assert not watch.lost({TopicPartition("t", 0)}), "holding a partition resets the watch"
    assert not watch.lost(set())


def test_readiness_names_the_partitions_nobody_held_for_longer_than_a_rebalance():
    settings = Settings(topic_partitions=2, index_shards=1)
    face, audio = ITEM_TOPICS[Modality.FACE], ITEM_TOPICS[Modality.AUDIO]
    every = {f"{face}:0", f"{face}:1", f"{audio}:0", f"{audio}:1"}
    unheld = Unheld(settings, after_s=SHORT_S)
    assert unheld.update(every) == []
    assert unheld.update(every - {f"{audio}:1"}) == []
    time.sleep(SHORT_S * 1.5)
    assert unheld.update(every - {f"{audio}:1"}) == [f"{audio}:1"]
    assert unheld.update(every) == []
    assert unheld.update(every - {f"{face}:0"}) == [], "a new gap starts its own clock"
