"""What `/readyz` checks: models loaded, an index holder per modality, Kafka reachable, and no
partition stopped at a batch ingest cannot read."""

import asyncio
import socket
from datetime import UTC, datetime

from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from pipeline.index.handles import shard_answers
from pipeline.kafka.clients import bootstrap_servers
from pipeline.settings import Settings
from schemas.api import Readiness, StoppedPartition
from schemas.items import Modality
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


class ReadinessCheck:
    def __init__(
        self,
        settings: Settings,
        holders: dict[Modality, list[ActorHandle]],
        router: VersionRouter,
    ) -> None:
        self._settings = settings
        self._holders = holders
        self._router = router

    async def run(self) -> Readiness:
        # A shard that is down (Ray restarts it) is a failed check, not a failed probe.
        answers = await shard_answers(self._holders, lambda h: h.size.remote())
        sizes = {m: sum(shards) for m, shards in answers.items() if shards is not None}
        try:
            versions = await self._router.holder_versions()
        except RayActorError:
            versions = {}
        loaded = await asyncio.gather(
            *(self._router.model(v) for v in versions.values()),
            return_exceptions=True,
        )
        stopped = await self._stopped_partitions()
        checks = {
            "models_loaded": not any(isinstance(m, Exception) for m in loaded),
            "indexes_loaded": set(sizes) == set(Modality),
            "kafka_reachable": await asyncio.to_thread(kafka_reachable, self._settings),
            "ingest_reading": not stopped,
        }
        return Readiness(
            ready=all(checks.values()),
            checks=checks,
            model_versions=versions,
            index_sizes=sizes,
            stopped_partitions=stopped,
        )

    @staticmethod
    async def _stopped_partitions() -> list[StoppedPartition]:
        return [
            StoppedPartition(
                topic=part.topic,
                partition=part.partition,
                offset=part.offset,
                error=part.error,
                actor=actor,
                since=datetime.fromtimestamp(part.since, UTC),
            )
            for actor, stats in sorted((await ingest_stats()).items())
            for part in stats.stopped
        ]
