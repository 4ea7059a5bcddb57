"""Ingest: produce → searchable throughput against the raw encoder, freshness, 1 vs 2 actors.

Each configuration runs a fresh local stack (its own state dir and embedded
broker) on models trained once with the quick preset. Measured in one run, so
the numbers compare with each other and with nothing else:

- raw throughput: face bytes through the front end (decode, detect, align) and
  `EmbeddingModel.embed` in batches of INGEST_BATCH_SIZE, in this process, with the
  threads an actor gets, measured right before each end-to-end run (on a shared machine
  the load drifts);
- end-to-end throughput: items produced as fast as the producer can until every
  id is searchable in the index holder, as a ratio to the raw number before it;
  beside it the producer's own rate (until its flush returned), which bounds it:
  the producer, the broker and the stack share the same cores;
- backlog drain: the ingest actor stopped, a larger batch of items produced, the actor
  restarted by Ray; items/s over the middle 80 % of the backlog as the holder's size
  grows, as a ratio to the raw number measured right before it. No producer shares the
  cores then: this is the pipeline on its own, as with producers on other machines;
- freshness: items produced at half the end-to-end rate, each timed from its
  `produced-at` header until the holder reports the id (polled every 20 ms);
- memory: the ingest actor's RSS while ingesting at half rate, and its peak
  under a 10× burst. The consumer is pull-based and polls again only while at
  most one bounded poll is still being processed, so a burst waits in Kafka,
  not in RAM.
"""

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from bench.encoder_rate import decode_and_embed_rate
from bench.report import BenchReport
from bench.stack import BENCH_BOOTSTRAP, BENCH_HTTP_PORT
from pipeline.data.asterisk import common_words, iter_asterisk
from pipeline.data.items import DataItem
from pipeline.data.orl import iter_orl
from pipeline.embed.model import EmbeddingModel
from pipeline.kafka.clients import headers, make_producer
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from pipeline.train.job import item_samples, train_and_register
from schemas.items import ITEM_TOPICS, Modality
from services.stack import Stack

# Ids per ORL image in the throughput and drain runs: 400 images → 6,400 items, so a run
# lasts seconds and its start and tail are a small share of it.
COPIES = 16
DRAIN_MIDDLE = (0.1, 0.9)
TRAIN_WORDS = 12
RAW_ROUNDS = 5
RAW_BATCHES = 4
FRESHNESS_ITEMS = 200
BURST_FACTOR = 10
POLL_S = 0.02
RSS_SAMPLE_S = 0.1
TIMEOUT_S = 600


def _faces() -> list[DataItem]:
    return list(iter_orl())


def _train(settings: Settings) -> None:
    """Quick-preset models for both modalities: the stack needs an active one of each."""
    store = MetadataStore.from_settings(settings)
    words = common_words()[:TRAIN_WORDS]
    data = {Modality.FACE: _faces(), Modality.AUDIO: list(iter_asterisk(words=words))}
    for modality, items in data.items():
        train_and_register(settings, store, modality, item_samples(modality, items), activate=True)


def _raw_rate(settings: Settings, faces: Sequence[bytes], threads: int) -> float:
    """Items/s of the front end and encoder alone on face bytes, the way an actor batches them."""
    store = MetadataStore.from_settings(settings)
    record = store.active_model(Modality.FACE)
    model = EmbeddingModel.from_record(record, ModelArtifacts(store, settings.models_dir))
    torch.set_num_threads(threads)
    size = settings.ingest_batch_size
    # Cycled so that several full batches fit whatever the batch size.
    cycled = [faces[i % len(faces)] for i in range(max(len(faces), RAW_BATCHES * size))]
    batches = [cycled[i : i + size] for i in range(0, len(cycled) - size + 1, size)]
    return decode_and_embed_rate(model, batches, RAW_ROUNDS)


@contextmanager
def _stack(models: Settings, work: Path, actors: int) -> Iterator[Stack]:
    """A fresh stack with `actors` ingest actors on the trained models, stopped afterwards."""
    state = work / f"actors-{actors}"
    settings = Settings(
        state_dir=state,
        kafka_bootstrap=BENCH_BOOTSTRAP,
        http_port=BENCH_HTTP_PORT,
        ingest_actors=actors,
        embed_threads=max(1, (os.cpu_count() or 1) // actors),
    )
    source, target = MetadataStore.from_settings(models), MetadataStore.from_settings(settings)
    for modality in Modality:
        target.register_model(replace(source.active_model(modality), active=True))
    stack = Stack(settings, log=lambda _: None)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


def _send(producer: Any, item_id: str, value: bytes) -> None:
    producer.send(
        ITEM_TOPICS[Modality.FACE],
        key=item_id.encode(),
        value=value,
        headers=headers(modality="face", produced_at=int(time.time() * 1000)),
    )


def _produce(settings: Settings, ids: Sequence[str], faces: Sequence[bytes]) -> None:
    """Send `ids`, cycling through `faces`, as fast as one producer can; back once all are
    acknowledged."""
    producer = make_producer(settings, linger_ms=20)
    for i, item_id in enumerate(ids):
        _send(producer, item_id, faces[i % len(faces)])
    producer.flush()
    producer.close()


@dataclass(frozen=True)
class Throughput:
    """One produce-as-fast-as-possible run: when the producer was done, when the index was."""

    items: int
    produced_s: float
    searchable_s: float

    @property
    def rate(self) -> float:
        return self.items / self.searchable_s

    @property
    def producer_rate(self) -> float:
        return self.items / self.produced_s


def _throughput(stack: Stack, faces: Sequence[bytes], tag: str) -> Throughput:
    """From the first send until the last id is searchable; the producer shares the
    machine with the stack, so its own finishing time shows how much of the run it set."""
    ids = [f"bench/{tag}/{i}" for i in range(len(faces) * COPIES)]
    base = stack.index_size(Modality.FACE)
    started = time.perf_counter()
    _produce(stack.settings, ids, faces)
    produced = time.perf_counter() - started
    searchable = _times_indexed(stack, base, [len(ids)])[len(ids)]
    stack.wait_indexed({Modality.FACE: ids}, TIMEOUT_S)
    return Throughput(len(ids), produced, searchable - started)


def _drain(stack: Stack, faces: Sequence[bytes]) -> float:
    """Items/s through the middle of a backlog that the (only) ingest actor finds waiting
    when Ray restarts it; the start and the tail (consumer joining, last partial polls) are
    left out, so this is the pipeline's steady rate with nothing else producing."""
    worker = stack.workers[0]
    ray.get(worker.stop.remote())
    base = stack.index_size(Modality.FACE)
    ids = [f"bench/drain/{i}" for i in range(len(faces) * COPIES)]
    _produce(stack.settings, ids, faces)
    ray.kill(worker, no_restart=False)
    low, high = (int(fraction * len(ids)) for fraction in DRAIN_MIDDLE)
    reached = _times_indexed(stack, base, [low, high])
    stack.wait_indexed({Modality.FACE: ids}, TIMEOUT_S)
    return (high - low) / (reached[high] - reached[low])


def _times_indexed(stack: Stack, base: int, marks: Sequence[int]) -> dict[int, float]:
    """When the face index first held `base` + each mark items, polled every POLL_S: finer
    than `Stack.wait_indexed`'s half second, which would be a large share of a run of seconds.
    Counts only; callers confirm the ids themselves."""
    reached: dict[int, float] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(reached) < len(marks):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the face index never reached {marks} new items; {stack.describe()}"
            )
        indexed = stack.index_size(Modality.FACE) - base
        for mark in marks:
            if indexed >= mark:
                reached.setdefault(mark, time.perf_counter())
        time.sleep(POLL_S)
    return reached


def _searchable_times(stack: Stack, ids: list[str], stop: threading.Event) -> dict[str, float]:
    """When each id first showed up in the holder (wall clock, like produced-at)."""
    seen: dict[str, float] = {}
    while len(seen) < len(ids) and not stop.is_set():
        pending = [i for i in ids if i not in seen]
        now = time.time()
        for item_id in set(pending) - set(stack.missing(Modality.FACE, pending)):
            seen[item_id] = now
        time.sleep(POLL_S)
    return seen


def _rss_bytes(pid: int) -> int:
    """Resident set size from /proc (Linux, where the stack runs)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Peak resident memory of one process, sampled in the background."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes(self._pid))
            self._stop.wait(RSS_SAMPLE_S)

    def close(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _freshness_and_memory(stack: Stack, faces: Sequence[bytes], rate: float) -> dict[str, float]:
    """Freshness at `rate` items/s, then the actor's peak RSS under a 10× burst."""
    pid = ray.get(stack.workers[0].__ray_call__.remote(lambda _: os.getpid()))
    ids = [f"bench/fresh/{i}" for i in range(FRESHNESS_ITEMS)]
    sampler = RssSampler(pid)
    stop = threading.Event()
    seen: dict[str, float] = {}
    poller = threading.Thread(
        target=lambda: seen.update(_searchable_times(stack, ids, stop)), daemon=True
    )
    poller.start()
    producer = make_producer(stack.settings)
    sent: dict[str, float] = {}
    started = time.perf_counter()
    for i, item_id in enumerate(ids):
        time.sleep(max(0.0, started + i / rate - time.perf_counter()))
        sent[item_id] = time.time()
        _send(producer, item_id, faces[i % len(faces)])
        producer.flush()
    poller.join(TIMEOUT_S)
    stop.set()
    steady_rss = sampler.close()
    latency = np.array([seen[i] - sent[i] for i in ids if i in seen])

    burst = [f"bench/burst/{i}" for i in range(FRESHNESS_ITEMS * BURST_FACTOR)]
    sampler = RssSampler(pid)
    for i, item_id in enumerate(burst):
        _send(producer, item_id, faces[i % len(faces)])
    producer.flush()
    producer.close()
    stack.wait_indexed({Modality.FACE: burst}, TIMEOUT_S)
    burst_rss = sampler.close()
    return {
        "rate_items_per_s": rate,
        "freshness_p50_s": float(np.percentile(latency, 50)),
        "freshness_p99_s": float(np.percentile(latency, 99)),
        "freshness_items": len(latency),
        "rss_steady_mib": steady_rss / 2**20,
        "rss_burst_peak_mib": burst_rss / 2**20,
        "burst_items": len(burst),
    }


def _markdown(results: dict[str, Any]) -> str:
    one, two = results["actors_1"], results["actors_2"]
    raw_one, raw_two = results["raw_before_1_actor"], results["raw_before_2_actors"]
    fresh = results["freshness"]
    return "\n".join(
        [
            "## ingest",
            "",
            "| measure | value |",
            "|---|---|",
            f"| raw front end + encoder before the 1-actor run | {raw_one:.0f} items/s |",
            f"| end to end, 1 actor | {one:.0f} items/s (ratio {one / raw_one:.2f}) |",
            f"| the producer, while the 1-actor stack ingested | "
            f"{results['producer_1_actor']:.0f} items/s |",
            f"| raw front end + encoder before the drain "
            f"| {results['raw_before_drain']:.0f} items/s |",
            f"| backlog drain, 1 actor, no producer running | {results['drain_1_actor']:.0f} "
            f"items/s (ratio {results['ratio_drain']:.2f}) |",
            f"| raw front end + encoder before the 2-actor run | {raw_two:.0f} items/s |",
            f"| end to end, 2 actors | {two:.0f} items/s (ratio {two / raw_two:.2f}) |",
            f"| the producer, while the 2-actor stack ingested | "
            f"{results['producer_2_actors']:.0f} items/s |",
            f"| 2 actors / 1 actor | {two / one:.2f} |",
            f"| freshness p50 / p99 at {fresh['rate_items_per_s']:.0f} items/s "
            f"| {fresh['freshness_p50_s']:.3f} s / {fresh['freshness_p99_s']:.3f} s |",
            f"| ingest actor RSS: steady / peak under a {BURST_FACTOR}× burst "
            f"| {fresh['rss_steady_mib']:.0f} / {fresh['rss_burst_peak_mib']:.0f} MiB |",
            "",
            "Targets: end to end ≥ 60 faces/s with the front end and the pretrained trunk, "
            "ratio ≥ 0.6 (issue 21); freshness p99 ≤ 1 s (issue 4).",
        ]
    )


def run(results_dir: Path) -> BenchReport:
    work = Path(tempfile.mkdtemp(prefix="twinstream-bench-ingest-"))
    try:
        models = Settings(
            state_dir=work / "models", kafka_bootstrap=BENCH_BOOTSTRAP, train_preset="quick"
        )
        _train(models)
        faces = [face.read_bytes() for face in _faces()]
        with _stack(models, work, actors=1) as stack:
            raw_one = _raw_rate(models, faces, stack.settings.embed_threads)
            one = _throughput(stack, faces, "one")
            raw_drain = _raw_rate(models, faces, stack.settings.embed_threads)
            drain = _drain(stack, faces)
            fresh = _freshness_and_memory(stack, faces, one.rate / 2)
        with _stack(models, work, actors=2) as stack:
            # The same total threads as one actor: two actors share the machine's cores.
            raw_two = _raw_rate(models, faces, 2 * stack.settings.embed_threads)
            two = _throughput(stack, faces, "two")
        results = {
            "raw_before_1_actor": raw_one,
            "raw_before_2_actors": raw_two,
            "actors_1": one.rate,
            "actors_2": two.rate,
            "runs": {"actors_1": asdict(one), "actors_2": asdict(two)},
            "producer_1_actor": one.producer_rate,
            "producer_2_actors": two.producer_rate,
            "ratio_1_actor": one.rate / raw_one,
            "ratio_2_actors": two.rate / raw_two,
            "raw_before_drain": raw_drain,
            "drain_1_actor": drain,
            "ratio_drain": drain / raw_drain,
            "drain_items": len(faces) * COPIES,
            "speedup_2_actors": two.rate / one.rate,
            "freshness": fresh,
            "items_per_run": len(faces) * COPIES,
        }
        return BenchReport(name="ingest", results=results, markdown=_markdown(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
