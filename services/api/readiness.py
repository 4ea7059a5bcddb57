"""What `/readyz` checks: models loaded, an index holder per modality, Kafka reachable, and every
item-topic partition read: none stopped at a batch ingest cannot read, none held by no ingest
actor for longer than a rebalance takes."""

import asyncio
import socket
import time
from datetime import UTC, datetime

from ray.exceptions import RayActorError

from pipeline.index.handles import Shards, shard_answers
from pipeline.ingest.membership import LOST_AFTER_S
from pipeline.ingest.stats import IngestStats
from pipeline.kafka.clients import bootstrap_servers
from pipeline.settings import Settings
from schemas.api import Readiness, StoppedPartition
from schemas.items import ITEM_TOPICS, Modality
from services.api.ingest_actors import ingest_stats
from services.api.routing import VersionRouter

KAFKA_PROBE_TIMEOUT_S = 1.0


def kafka_reachable(settings: Settings) -> bool:
    """A TCP connect to the first bootstrap server: cheap enough for every probe."""
    host, _, port = bootstrap_servers(settings)[0].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), KAFKA_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


class Unheld:
    """The item-topic partitions no answering ingest actor has held for LOST_AFTER_S: a
    rebalance leaves some unheld for seconds, a consumer lost from its group for good."""

    def __init__(self, settings: Settings, after_s: float = LOST_AFTER_S) -> None:
        self._after_s = after_s
        self._partitions = {
            f"{ITEM_TOPICS[m]}:{p}" for m in Modality for p in range(settings.topic_partitions)
        }
        self._since: dict[str, float] = {}

    def update(self, held: set[str]) -> list[str]:
        now = time.monotonic()
        self._since = {p: self._since.get(p, now) for p in self._partitions - held}
        return sorted(p for p, since in self._since.items() if now - since > self._after_s)


class ReadinessCheck:
    def __init__(
        self,
        settings: Settings,
        holders: dict[Modality, Shards],
        router: VersionRouter,
    ) -> None:
        self._settings = settings
        self._holders = holders
        self._router = router
        self._unheld = Unheld(settings)

    async def run(self) -> Readiness:
        # A shard that is down (Ray restarts it) is a failed check, not a failed probe.
        answers = await shard_answers(self._holders, lambda h: h.size.remote())
        sizes = {
            m: sum(replicas[0] for replicas in shards)
            for m, shards in answers.items()
            if shards is not None
        }
        try:
            versions = await self._router.holder_versions()
        except RayActorError:
            versions = {}
        loaded = await asyncio.gather(
            *(self._router.model(v) for v in versions.values()),
            return_exceptions=True,
        )
        stats = await ingest_stats()
        stopped = self._stopped_partitions(stats)
        unheld = self._unheld.update({p for s in stats.values() for p in s.held})
        checks = {
            "models_loaded": not any(isinstance(m, Exception) for m in loaded),
            "indexes_loaded": set(sizes) == set(Modality),
            "kafka_reachable": await asyncio.to_thread(kafka_reachable, self._settings),
            "ingest_reading": not stopped and not unheld,
        }
        return Readiness(
            ready=all(checks.values()),
            checks=checks,
            model_versions=versions,
            index_sizes=sizes,
            stopped_partitions=stopped,
            unheld_partitions=unheld,
        )

    @staticmethod
    def _stopped_partitions(stats: dict[str, IngestStats]) -> list[StoppedPartition]:
        return [
            StoppedPartition(
                topic=part.topic,
                partition=part.partition,
                offset=part.offset,
                error=part.error,
                actor=actor,
                since=datetime.fromtimestamp(part.since, UTC),
            )
            for actor, actor_stats in sorted(stats.items())
            for part in actor_stats.stopped
        ]
