"""Prometheus metrics of one API replica: requests, latency, and the pipeline's state.

Request metrics are counted in-process by a middleware; index size, ingest
progress and consumer lag are read from the index holders and the broker at
scrape time, so every replica reports the same pipeline numbers without
keeping a copy of them.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from ray.actor import ActorHandle

from pipeline.kafka.clients import make_consumer
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, Modality, topic_modality


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "upserts applied since the holder started",
            ["modality"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "twinstream_consumer_lag",
            "messages in the log not yet reflected by the index",
            ["topic", "partition"],
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


async def observe(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    # The route template, not the path: item ids must not explode the label set.
    route = getattr(request.scope.get("route"), "path", "unmatched")
    METRICS.latency.labels(request.method, route).observe(time.perf_counter() - start)
    METRICS.requests.labels(request.method, route, str(response.status_code)).inc()
    return response


class PipelineProbe:
    """Reads the pipeline's numbers for a scrape: holders for the index side, Kafka for the log."""

    def __init__(self, settings: Settings, holders: dict[Modality, ActorHandle]) -> None:
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
        stats = dict(
            zip(
                self._holders,
                await asyncio.gather(*(h.stats.remote() for h in self._holders.values())),
                strict=True,
            )
        )
        ends = await asyncio.to_thread(self._end_offsets)
        # One series per modality: the version switched away from must not linger at 1.
        metrics.model.clear()
        for modality, held in stats.items():
            metrics.index_size.labels(modality.value).set(held["size"])
            metrics.indexed.labels(modality.value).set(held["applied"])
            metrics.model.labels(modality.value, held["model_version"]).set(1)
        for tp, end in ends.items():
            reflected = stats[topic_modality(tp.topic)]["offsets"].get(tp.partition, 0)
            metrics.lag.labels(tp.topic, str(tp.partition)).set(max(end - reflected, 0))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
