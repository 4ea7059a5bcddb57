"""How the ingest consumer learns its partitions and notices it has none: the listener notes
assignments for the consuming thread (on the real broker), a consumer holding nothing for too
long is declared lost only when it should hold some, a restarted member takes its old place
under its instance id and a stopping one leaves, and readiness names a partition nobody has held
for longer than a rebalance takes."""

import logging
import time
import uuid

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.ingest.membership import AssignmentNotes, MembershipWatch, leave_group
from pipeline.kafka.clients import make_admin, make_consumer
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, Modality
from services.api.readiness import Unheld
from tests.fixtures_kafka import group_members, subscribe_when_known

SHORT_S = 0.2
# Well under the session timeout (45 s) a rebalance would wait out a dead dynamic member for.
JOIN_TIMEOUT_S = 30


def _assigned(consumer: KafkaConsumer) -> set[TopicPartition]:
    """What the group gave the consumer once it has joined (polled until then, at most
    JOIN_TIMEOUT_S)."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
    return consumer.assignment()


def test_the_listener_notes_what_the_group_assigned_for_the_consuming_thread(
    kafka_settings: Settings,
):
    topic = f"test.membership.{uuid.uuid4().hex[:8]}"
    with make_admin(kafka_settings) as admin:
        admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    notes = AssignmentNotes()
    consumer = make_consumer(kafka_settings, group_id=f"test-{uuid.uuid4().hex[:8]}")
    subscribe_when_known(consumer, topic, notes)
    try:
        expected = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        assert _assigned(consumer) == expected
        assigned, revoked = notes.take()
        assert assigned == expected
        # A busy broker may rebalance a new group once more, revoking all it gave: what was
        # revoked and assigned again is noted in both, for the consuming thread to resume.
        assert revoked in (set(), expected)
        assert notes.take() == (set(), set())
    finally:
        consumer.close()


def test_a_member_restarted_under_its_instance_id_takes_its_place_and_leaves_when_told(
    kafka_settings: Settings,
):
    topic = f"test.membership.{uuid.uuid4().hex[:8]}"
    group = f"test-{uuid.uuid4().hex[:8]}"
    with make_admin(kafka_settings) as admin:
        admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    expected = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
    for life in range(2):
        # Closing a static member sends no LeaveGroup: to the broker it is as if it died.
        consumer = make_consumer(kafka_settings, group_id=group, group_instance_id="ingest-0")
        subscribe_when_known(consumer, topic)
        try:
            assert _assigned(consumer) == expected, f"life {life}"
        finally:
            consumer.close()
        assert group_members(kafka_settings, group) == [("ingest-0", [0, 1])], f"life {life}"
    leave_group(kafka_settings, group, "ingest-0")
    assert group_members(kafka_settings, group) == []
    leave_group(kafka_settings, group, "ingest-0")  # already gone: nothing to do, no error


def test_a_member_that_cannot_reach_the_broker_says_so_and_its_stop_goes_on(
    caplog: pytest.LogCaptureFixture,
):
    nowhere = Settings(kafka_bootstrap="127.0.0.1:1")  # a port nothing listens on
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.membership"):
        leave_group(nowhere, "twinstream-ingest", "ingest-0")
    said = [r for r in caplog.records if r.name == "pipeline.ingest.membership"]
    assert [r.getMessage().split(":")[0] for r in said] == [
        "ingest-0 could not leave consumer group twinstream-ingest"
    ]


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
