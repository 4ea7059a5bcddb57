"""Prometheus metrics of one API replica: requests, latency, and the pipeline's state.

Request metrics are counted in-process by a middleware; index size, ingest
progress and consumer lag are read from the index holders and the broker at
scrape time, and the ingest actors' counters and histograms (items, deletes,
dead letters, batch size, embed latency, stopped partitions) from each actor, so every replica
reports the same pipeline numbers without keeping a copy of them.
"""

import asyncio
import time
from collections.abc import Iterator

from fastapi import Response
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import Message, Receive, Scope, Send

from pipeline.index.handles import Shards, shard_answers
from pipeline.index.shards import applied_everywhere
from pipeline.ingest.stats import IngestStats
from pipeline.kafka.clients import make_consumer
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, Modality, topic_modality
from services.api.asgi import HttpMiddleware
from services.api.ingest_actors import ingest_stats


class IngestCollector(Collector):
    """Renders the ingest actors' last fetched stats, labelled by actor."""

    def __init__(self) -> None:
        self.stats: dict[str, IngestStats] = {}

    def collect(self) -> Iterator[Metric]:
        counters = {
            "indexed": CounterMetricFamily(
                "twinstream_ingest_items", "items upserted into the index", labels=["actor"]
            ),
            "deleted": CounterMetricFamily(
                "twinstream_ingest_deletes", "tombstones applied", labels=["actor"]
            ),
            "dead_lettered": CounterMetricFamily(
                "twinstream_dead_letters", "records sent to the dead-letter topic", labels=["actor"]
            ),
            "retries": CounterMetricFamily(
                "twinstream_ingest_retries",
                "batches that failed and were replayed from the index's offsets",
                labels=["actor"],
            ),
            "stalls": CounterMetricFamily(
                "twinstream_ingest_stalls",
                "empty polls while behind the log, answered by seeking again",
                labels=["actor"],
            ),
            "rejoins": CounterMetricFamily(
                "twinstream_ingest_rejoins",
                "times a consumer held no partition for a minute and joined its group again",
                labels=["actor"],
            ),
        }
        held = GaugeMetricFamily(
            "twinstream_ingest_partitions_held",
            "item-topic partitions the actor's consumer holds",
            labels=["actor"],
        )
        batch = HistogramMetricFamily(
            "twinstream_ingest_batch_size", "records per ingest poll", labels=["actor"]
        )
        embed = HistogramMetricFamily(
            "twinstream_embed_seconds", "encoder forward pass per batch", labels=["actor"]
        )
        stopped = GaugeMetricFamily(
            "twinstream_ingest_partition_stopped",
            "1 for a partition stopped at a batch the consumer cannot read, until a restart",
            labels=["actor", "topic", "partition", "error"],
        )
        for actor, stats in self.stats.items():
            for key, family in counters.items():
                family.add_metric([actor], stats.counts()[key])
            held.add_metric([actor], len(stats.held))
            for part in stats.stopped:
                stopped.add_metric([actor, part.topic, str(part.partition), part.error_type], 1)
            batch.add_metric([actor], stats.batch_size.cumulative(), stats.batch_size.total)
            embed.add_metric([actor], stats.embed_seconds.cumulative(), stats.embed_seconds.total)
        yield from counters.values()
        yield held
        yield batch
        yield embed
        yield stopped


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ingest = IngestCollector()
        self.registry.register(self.ingest)
        self.requests = Counter(
            "twinstream_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "twinstream_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.index_size = Gauge(
            "twinstream_index_items", "items in the index", ["modality"], registry=self.registry
        )
        self.indexed = Gauge(
            "twinstream_indexed_upserts",
            "upserts applied since the index shards started",
            ["modality"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "twinstream_consumer_lag",
            "messages in the log not yet reflected by the index",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.checkpoint_age = Gauge(
            "twinstream_checkpoint_age_seconds",
            "how long index changes have waited for a checkpoint (0: all durable)",
            ["modality"],
            registry=self.registry,
        )
        self.checkpoint_duration = Gauge(
            "twinstream_checkpoint_duration_seconds",
            "how long the last checkpoint took to write",
            ["modality"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "twinstream_embed_batch_items",
            "queries sharing one encoder forward pass",
            ["modality"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.index_reads = Counter(
            "twinstream_index_reads",
            "searches and id lookups of one index shard, by where they ran: the replica's copy "
            "or the shard",
            ["modality", "served_by"],
            registry=self.registry,
        )
        self.id_lookups = Counter(
            "twinstream_id_lookups",
            "queries naming an item by id, by the shards asked for its vector: only the one its "
            "key's default partition maps to, or every shard when that one did not hold it (an "
            "item its producer placed in another partition, or an unknown id)",
            ["modality", "asked"],
            registry=self.registry,
        )
        self.holder_up = Gauge(
            "twinstream_index_holder_up",
            "1 while every index shard of the modality answers; 0 while one is down (Ray "
            "restarts it)",
            ["modality"],
            registry=self.registry,
        )
        self.replicas_up = Gauge(
            "twinstream_index_replicas_up",
            "index shard replicas of the modality answering, over all its shards (INDEX_SHARDS "
            "x INDEX_REPLICAS when all are up)",
            ["modality"],
            registry=self.registry,
        )
        self.model = Gauge(
            "twinstream_model_info",
            "the model version serving each modality",
            ["modality", "version"],
            registry=self.registry,
        )


# One per process. Serve pickles the app into each replica; the middleware below is
# a module-level function, so it is pickled by reference and counts into the
# replica's own registry (metric objects hold locks and could not travel anyway).
METRICS = ApiMetrics()


class RequestMetrics(HttpMiddleware):
    """Counts every request with its route and status, and times it."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The route template, not the path: item ids must not explode the label set.
            # The router records the matched route in the scope it was handed.
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            METRICS.latency.labels(method, route).observe(time.perf_counter() - start)
            METRICS.requests.labels(method, route, str(status)).inc()


class PipelineProbe:
    """Reads the pipeline's numbers for a scrape: holders for the index side, Kafka for the log."""

    def __init__(self, settings: Settings, holders: dict[Modality, Shards]) -> None:
        self._settings = settings
        self._holders = holders
        self._consumer: KafkaConsumer | None = None

    def _end_offsets(self) -> dict[TopicPartition, int]:
        if self._consumer is None:
            self._consumer = make_consumer(self._settings, group_id=None)
        partitions = [
            TopicPartition(topic, p)
            for topic in ITEM_TOPICS.values()
            for p in self._consumer.partitions_for_topic(topic) or ()
        ]
        return self._consumer.end_offsets(partitions)

    async def render(self) -> Response:
        metrics = METRICS
        stats = {}
        for modality, shard_stats in (
            await shard_answers(self._holders, lambda h: h.stats.remote())
        ).items():
            # A shard that is down is a metric, not a failed scrape (the scrape must show the
            # outage); the modality's other series keep their last values meanwhile.
            if shard_stats is None:
                metrics.holder_up.labels(modality.value).set(0)
                continue
            metrics.holder_up.labels(modality.value).set(1)
            metrics.replicas_up.labels(modality.value).set(sum(len(r) for r in shard_stats))
            stats[modality] = _modality_stats(shard_stats)
        ends = await asyncio.to_thread(self._end_offsets)
        metrics.ingest.stats = await ingest_stats()
        # One series per modality: the version switched away from must not linger at 1.
        metrics.model.clear()
        for modality, held in stats.items():
            metrics.index_size.labels(modality.value).set(held["size"])
            metrics.indexed.labels(modality.value).set(held["applied"])
            metrics.checkpoint_age.labels(modality.value).set(held["checkpoint_age_s"])
            metrics.checkpoint_duration.labels(modality.value).set(held["checkpoint_s"])
            metrics.model.labels(modality.value, held["model_version"]).set(1)
        for tp, end in ends.items():
            if topic_modality(tp.topic) not in stats:
                continue
            reflected = stats[topic_modality(tp.topic)]["offsets"].get(tp.partition, 0)
            metrics.lag.labels(tp.topic, str(tp.partition)).set(max(end - reflected, 0))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _modality_stats(shards: list[list[dict]]) -> dict:
    """A modality's series from its shards' live replicas: counts are the first replica's and
    add up over shards, the oldest checkpoint and the slowest write speak for all, a
    partition's offset is its least advanced replica's."""
    every = [s for replicas in shards for s in replicas]
    return {
        "size": sum(replicas[0]["size"] for replicas in shards),
        "applied": sum(replicas[0]["applied"] for replicas in shards),
        "checkpoint_age_s": max(s["checkpoint_age_s"] for s in every),
        "checkpoint_s": max(s["checkpoint_s"] for s in every),
        "model_version": shards[0][0]["model_version"],
        "offsets": {
            p: o
            for replicas in shards
            for p, o in applied_everywhere([s["offsets"] for s in replicas]).items()
        },
    }
