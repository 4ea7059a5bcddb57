"""What the ingest consumer's group gave it, learned without blocking kafka-python's IO thread,
and when holding nothing means the consumer has been lost rather than left idle.

kafka-python 3 runs rebalance listeners on its IO thread, where blocking work holds up the
heartbeats and the group join itself (its own warning says so). Resuming a partition asks the
index shards for their offsets over Ray and waits for a batch being applied, so the listener
here only notes what changed and the consuming thread acts on it after the poll.

A consumer that is one of no more members than there are partitions always gets some. One that
holds none for `LOST_AFTER_S` has dropped out of its group without an error (seen once under
load: empty polls, nothing assigned, nothing logged), so the worker leaves and joins again.

Each actor is a static member of the group (KIP-345), its instance id its actor name: Ray
restarts a killed actor under the same name, and the broker hands the new consumer the old
one's partitions at once, instead of a rebalance that waits out the dead member's session
(45 s). A static member never leaves on close, so a stopping actor removes itself.
"""

import logging
import threading
import time

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.admin import MemberToRemove
from kafka.errors import NoError, UnknownMemberIdError

from pipeline.kafka.clients import make_admin
from pipeline.settings import Settings

log = logging.getLogger(__name__)

# Longer than a rebalance waits for a dead member (kafka-python's session timeout, 45 s).
LOST_AFTER_S = 60.0


class AssignmentNotes(ConsumerRebalanceListener):
    """The partitions assigned and revoked since the consuming thread last asked."""

    def __init__(self) -> None:
        self._assigned: set[TopicPartition] = set()
        self._revoked: set[TopicPartition] = set()
        self._lock = threading.Lock()

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        with self._lock:
            self._revoked |= set(revoked)
            self._assigned -= set(revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        with self._lock:
            self._assigned |= set(assigned)

    def take(self) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """(assigned, revoked) since the last call; a partition revoked and assigned again
        is in both, and must be resumed."""
        with self._lock:
            taken = self._assigned, self._revoked
            self._assigned, self._revoked = set(), set()
        return taken


class MembershipWatch:
    """Says when a consumer that should hold partitions has held none for `lost_after_s`."""

    def __init__(self, members: int, partitions: int, lost_after_s: float = LOST_AFTER_S) -> None:
        self._expects = members <= partitions
        self._lost_after_s = lost_after_s
        self._empty_since: float | None = None

    def lost(self, held: set[TopicPartition]) -> bool:
        if held or not self._expects:
            self._empty_since = None
            return False
        now = time.monotonic()
        if self._empty_since is None:
            self._empty_since = now
        return now - self._empty_since > self._lost_after_s

    def rejoined(self) -> None:
        self._empty_since = None


def leave_group(settings: Settings, group: str, instance: str) -> None:
    """Remove the static member `instance` from `group`, so its partitions go to the others now
    rather than when its session expires; a member already gone is fine. A broker out of reach
    is said and left to expire the member: a stop goes on."""
    try:
        with make_admin(settings) as admin:
            member = MemberToRemove(group_instance_id=instance)
            outcome = admin.remove_group_members(group, [member])
    except Exception as error:
        log.warning("%s could not leave consumer group %s: %s", instance, group, error)
        return
    for error in outcome.values():
        if error not in (NoError, UnknownMemberIdError):
            log.warning("%s could not leave consumer group %s: %s", instance, group, error.__name__)
