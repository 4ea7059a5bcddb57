"""Creates twinstream's topics, on the embedded broker or on an existing cluster.

The embedded broker refuses to auto-create topics, so every producer and
consumer relies on this having run first; it is idempotent so each start can
call it.
"""

import contextlib
from typing import Any

from kafka.errors import TopicAlreadyExistsError

from pipeline.kafka.clients import make_admin, message_limit_bytes
from pipeline.settings import Settings
from schemas.items import DLQ_TOPIC, ITEM_TOPICS, PAIRS_TOPIC


def topic_specs(settings: Settings) -> dict[str, dict[str, Any]]:
    """Partitions and configs per topic, in kafka-python's create_topics shape.

    Item partitions bound how many ingest actors can share the work; pair
    feedback and dead letters are low-volume and keep a single ordered log.
    Items and dead letters (which carry items unchanged) accept messages up to
    the shared limit, so an external cluster with a smaller default still hands
    oversized items to the ingest actors to be dead-lettered with a reason.
    The replication factor is left to the cluster's default: 1 on the embedded
    broker, whatever the operators chose elsewhere.

    Item topics are compacted changelogs: the newest value per item id is kept
    for ever and a tombstone eventually removes the key, so replaying a topic
    from the beginning (how an index is rebuilt for a new model) yields exactly
    the current items, however old. Pair feedback is training data: kept too.
    """
    large = {"max.message.bytes": str(message_limit_bytes(settings))}
    specs: dict[str, dict[str, Any]] = {
        topic: {
            "num_partitions": settings.topic_partitions,
            "configs": large | {"cleanup.policy": "compact"},
        }
        for topic in ITEM_TOPICS.values()
    }
    specs[PAIRS_TOPIC] = {"num_partitions": 1, "configs": {"retention.ms": "-1"}}
    specs[DLQ_TOPIC] = {"num_partitions": 1, "configs": large}
    return specs


def ensure_topics(settings: Settings, timeout: float = 30) -> None:
    """Create whichever topics are missing and wait until all have leaders.

    Topics that already exist are left as they are: adding partitions would move
    keys to other partitions and break the per-item ordering that upserts need.
    """
    specs = topic_specs(settings)
    with make_admin(settings) as admin:
        existing = set(admin.list_topics())
        missing = {topic: spec for topic, spec in specs.items() if topic not in existing}
        # Another process may create one between the listing and the request.
        with contextlib.suppress(TopicAlreadyExistsError):
            if missing:
                admin.create_topics(missing)
        admin.wait_for_topics(list(specs), timeout_ms=int(timeout * 1000))
