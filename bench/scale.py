"""scale: the sharded index at a million vectors, on a Ray cluster of two nodes on this machine.

Two `ray start` nodes (bench/local_cluster.py) with one CPU each; the service's own index
shards (INDEX_SHARDS = 4, each with INDEX_REPLICAS = 2 replicas, one on each node), its
retraining coordinator and its Serve API join them, as `twinstream up` does on a cluster. The
API replicas keep no copy of the index (API_INDEX_COPIES off): they are stateless routers, and
every search fans out to the shards. The vectors are the face-shaped Gaussian mixture of the
index-scale benchmark (bench/embedding_mixture.py), written through `IndexHolder.apply` exactly
as an ingest actor writes a batch (split by partition, every replica of every shard at once),
so that the encoder is not what is measured; they carry no Kafka offsets (they never were in a
topic), so the shards' checkpoints hold the vectors but move no watermark. Queries go through
the HTTP API by item id. Last, the worker node is killed while queries run: they fail over to
the replicas on the head.
"""

import concurrent.futures
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np
import ray
from ray.actor import ActorHandle

from bench import balancer
from bench.embedding_mixture import Mixture, measure_shape, orl_face_embeddings
from bench.index_scale import TARGET_BYTES_FACTOR, TARGET_RECALL_AT_10, resident_bytes
from bench.local_cluster import cluster_env, local_cluster
from bench.report import BenchReport
from bench.serve_baselines import noop_serve_app
from pipeline.embed.config import ENCODERS
from pipeline.embed.encoders import build_encoder
from pipeline.embed.model import EmbeddingModel
from pipeline.index.holder import IndexHolder, IndexUpdate
from pipeline.index.shard_map import ShardMap
from pipeline.index.shards import split_update
from pipeline.kafka.partitioning import key_partition
from pipeline.placement import plan_placement
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import ModelRecord
from schemas.items import Modality
from services.stack import Stack

VECTORS = 1_000_000
SHARDS = 4
REPLICAS = 2
NODES = 2
# The one-holder baseline's share of the vectors, loaded the same way into one actor.
BASELINE_VECTORS = 250_000
PARTITIONS = 4
PER_IDENTITY = 10
APPLY_BATCH = 2_000
K = 10
QUERIES = 200
SHARD_ROUNDS = 5
CONCURRENCY = 8
RAY_PORT = 36379
HTTP_PORT = 28100
SEED = 24
RECOVERY_TIMEOUT_S = 300
# Issue 24's targets beside index-scale's (recall, bytes).
TARGET_SHARD_P99_MS = 10.0
TARGET_API_P99_MS = 50.0
TARGET_RECOVERY_S = 60.0
# Queries through the API after the worker node is killed, once every replica answers again.
AFTER_NODE_LOSS_S = 10.0


def _item(j: int) -> str:
    return f"scale/{j:07d}"


def _positions(count: int) -> np.ndarray:
    """Where a producer's default partitioner puts item j (its key's partition), and its offset
    there: rows of (partition, offset)."""
    partitions = np.fromiter(
        (key_partition(_item(j), PARTITIONS) for j in range(count)), dtype=np.int64, count=count
    )
    offsets = np.zeros(count, dtype=np.int64)
    for partition in range(PARTITIONS):
        placed = partitions == partition
        offsets[placed] = np.arange(np.count_nonzero(placed))
    return np.stack([partitions, offsets], axis=1)


def _update(
    start: int, vectors: np.ndarray, labels: list[str], positions: np.ndarray, version: str
) -> IndexUpdate:
    """A batch as ingest makes one, items at their `positions`, no log offsets."""
    return IndexUpdate(
        upsert_ids=[_item(j) for j in range(start, start + len(vectors))],
        vectors={version: vectors},
        labels=labels,
        upsert_positions=[(int(p), int(o)) for p, o in positions],
        delete_ids=[],
        delete_positions=[],
    )


def _load(
    shards: list[list[ActorHandle]],
    vectors: np.ndarray,
    labels: list[str],
    positions: np.ndarray,
    version: str,
    marks: tuple[int, ...] = (),
) -> dict[int, float]:
    """Apply every vector, a batch at a time, each batch's parts to every replica of their
    shards at once; returns the seconds at which each mark (a count of vectors) was applied."""
    owners = ShardMap(len(shards))
    started = time.perf_counter()
    reached = {}
    for start in range(0, len(vectors), APPLY_BATCH):
        stop = min(start + APPLY_BATCH, len(vectors))
        update = _update(
            start, vectors[start:stop], labels[start:stop], positions[start:stop], version
        )
        parts = split_update(update, owners)
        ray.get([r.apply.remote(part) for s, part in parts.items() for r in shards[s]])
        reached |= {m: time.perf_counter() - started for m in marks if start < m <= stop}
    reached[len(vectors)] = time.perf_counter() - started
    return reached


def _grown(shards: list[ActorHandle]) -> list[str]:
    """Each shard's index kind once its background build, if any, is swapped in."""
    ray.get([s.__ray_call__.remote(_wait_for_growth) for s in shards])
    return [stats["index_kind"] for stats in ray.get([s.stats.remote() for s in shards])]


def _wait_for_growth(holder: IndexHolder) -> None:
    for index in holder._indexes.values():
        index.wait_for_growth()


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _api_searches(
    ids: list[str], concurrency: int, prefix: str = ""
) -> tuple[list[float], list[list[str]]]:
    """Each id's search through the HTTP API (or the app at `prefix`), `concurrency` at a
    time: latencies and hits."""

    def search(client: httpx.Client, item_id: str) -> tuple[float, list[str]]:
        body = {"modality": "face", "item": {"id": item_id}, "k": K}
        started = time.perf_counter()
        response = client.post(f"{prefix}/v1/search", json=body)
        elapsed = 1e3 * (time.perf_counter() - started)
        response.raise_for_status()
        return elapsed, [m["id"] for m in response.json()["matches"]]

    with (
        httpx.Client(base_url=f"http://127.0.0.1:{HTTP_PORT}", timeout=60) as client,
        concurrent.futures.ThreadPoolExecutor(concurrency) as pool,
    ):
        search(client, ids[0])
        answers = list(pool.map(lambda i: search(client, i), ids))
    return [ms for ms, _ in answers], [hits for _, hits in answers]


def _noop_serve_ms(ids: list[str], max_ongoing: int) -> list[float]:
    """The same searches sent one at a time to a no-op Serve app on the same cluster: the
    floor Ray Serve's own HTTP path sets here (the baseline of the API's c = 1 row)."""
    with noop_serve_app(max_ongoing) as prefix:
        return _api_searches(ids, 1, prefix)[0]


def _shard_search_ms(holder: IndexHolder, version: str, queries: np.ndarray) -> list[float]:
    """Inside a shard (run there by `__ray_call__`): one query at a time, as the API asks,
    SHARD_ROUNDS times over, so that the p99 is not one of a few slowest."""
    times = []
    for query in np.tile(queries, (SHARD_ROUNDS, 1)):
        started = time.perf_counter()
        holder.search(version, query[np.newaxis], K)
        times.append(1e3 * (time.perf_counter() - started))
    return times


def _spin_ms(_: Any, spin_ms: float, times: int) -> list[float]:
    """Inside a shard: a CPU spin as long as a median search, `times` times: the tail this
    machine's scheduling gives any work of that length in that process (the baseline)."""
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        while time.perf_counter() - started < spin_ms / 1e3:
            pass
        taken.append(1e3 * (time.perf_counter() - started))
    return taken


def _recovery(shard: ActorHandle, ids: list[str]) -> dict[str, Any]:
    """kill -9 of a shard (its checkpoint written) until it answers again, holding every id."""
    before = ray.get(shard.size.remote())
    ray.get(shard.snapshot.remote())
    killed = ray.get(shard.__ray_call__.remote(_pid))
    ray.kill(shard, no_restart=False)
    started = time.perf_counter()
    # Answered by the restarted process: a call can still reach the dying one.
    while True:
        try:
            if ray.get(shard.__ray_call__.remote(_pid), timeout=RECOVERY_TIMEOUT_S) != killed:
                break
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            if time.perf_counter() - started > RECOVERY_TIMEOUT_S:
                raise
        time.sleep(0.2)
    size = ray.get(shard.size.remote())
    recovery_s = time.perf_counter() - started
    present = ray.get(shard.contains.remote(ids))
    return {
        "recovery_s": recovery_s,
        "vectors": before,
        "lost": int(len(ids) - sum(present)),
        "duplicated": int(size - sum(present)),
    }


def _pid(_: Any) -> int:
    return os.getpid()


def _node_and_pid(_: Any) -> tuple[str, int]:
    return ray.get_runtime_context().get_node_id(), os.getpid()


def _held_bytes(_: Any) -> dict[str, int]:
    """Run inside a shard by `__ray_call__`: its process's resident bytes, after handing freed
    heap back: its own (anonymous) and the shared memory it maps, which is the node's object
    store (where Ray put the batches it was sent), and all of them together."""
    parts = {"all": resident_bytes()}
    fields = {"RssAnon:": "own", "RssShmem:": "object_store"}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, *value = line.split()
        if name in fields:
            parts[fields[name]] = int(value[0]) * 1024
    return parts


def _summed(parts: list[dict[str, int]]) -> dict[str, int]:
    return {key: sum(p[key] for p in parts) for key in parts[0]}


def _names_disk_bytes(_: Any) -> int:
    """Run inside a shard by `__ray_call__`: bytes of the SQLite temporary files it has open
    (its indexes' item names; SQLite names them etilqs_*)."""
    fds = Path("/proc/self/fd")
    total = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if "etilqs_" in os.readlink(fd):
                total += os.stat(fd).st_size
    return total


def _register_models(settings: Settings) -> str:
    """Untrained production configs: no query here runs an encoder, but the service loads the
    active model of every modality."""
    store = MetadataStore.from_settings(settings)
    try:
        for modality, config in ENCODERS.items():
            version = f"{modality.value}-v1"
            data = EmbeddingModel(build_encoder(config), version, 0.5, device="cpu").to_bytes()
            store.register_model(
                ModelRecord(
                    version=version,
                    modality=modality,
                    config={"encoder": config.to_dict()},
                    threshold=0.5,
                    energy=config.energy,
                    artifact_path="",
                    artifact_sha256=hashlib.sha256(data).hexdigest(),
                    active=True,
                ),
                data,
            )
        return f"{Modality.FACE.value}-v1"
    finally:
        store.close()


def run(results_dir: Path) -> BenchReport:
    """The cluster here; the measuring driver in a process of its own, which joins the cluster
    with a node's environment (Ray reads its authentication mode when it is imported)."""
    del results_dir  # the runner writes the report
    with (
        tempfile.TemporaryDirectory() as tmp,
        local_cluster(Path(tmp), RAY_PORT, 1, {f"worker-{n}": 1 for n in range(1, NODES)}) as nodes,
    ):
        out = Path(tmp) / "scale.json"
        address = f"127.0.0.1:{RAY_PORT}"
        worker = nodes["worker-1"].process.pid
        subprocess.run(
            [sys.executable, "-m", "bench.scale", tmp, str(out), str(worker)],
            env=cluster_env() | {"TWINSTREAM_RAY_ADDRESS": address},
            check=True,
        )
        results = json.loads(out.read_text())
    results["targets"] = _targets(results)
    return BenchReport("scale", results, _markdown(results))


def main(tmp: Path, out: Path, worker_node: int) -> None:
    """The driver: vectors, the service's shards and API on the cluster, the measurements;
    `worker_node` is the process group of the node it kills last."""
    rng = np.random.default_rng(SEED)
    faces, people = orl_face_embeddings()
    identities = VECTORS // PER_IDENTITY
    mixture = Mixture.draw(measure_shape(faces, people), identities, rng)
    owner = np.repeat(np.arange(identities), PER_IDENTITY)
    vectors = mixture.shots(owner, rng)
    labels = [f"person-{i}" for i in owner]
    query_rows = rng.choice(VECTORS, QUERIES, replace=False)
    _, truth = faiss.knn(vectors[query_rows], vectors, K)
    exact = [[_item(int(j)) for j in row] for row in truth]
    settings = Settings(
        state_dir=tmp / "state",
        index_shards=SHARDS,
        index_replicas=REPLICAS,
        topic_partitions=PARTITIONS,
        api_index_copies=False,
        http_port=HTTP_PORT,
    )
    version = _register_models(settings)
    stack = Stack(settings, log=lambda _: None)
    try:
        stack.start_ray()
        stack.start_index()
        placement = plan_placement(ray.cluster_resources(), settings)
        stack.start_retrainer(placement)
        stack.start_api(placement)
        positions = _positions(VECTORS)
        results = _measure(stack, settings, version, vectors, labels, positions, query_rows, exact)
        results["nodes"] = len(ray.nodes())
        results["node_loss"] = _node_loss(stack, worker_node, [_item(int(j)) for j in query_rows])
    finally:
        stack.stop()
    results |= {
        "vectors": VECTORS,
        "dim": vectors.shape[1],
        "shards": SHARDS,
        "replicas": REPLICAS,
    }
    out.write_text(json.dumps(results))


def _measure(
    stack: Stack,
    settings: Settings,
    version: str,
    vectors: np.ndarray,
    labels: list[str],
    positions: np.ndarray,
    query_rows: np.ndarray,
    exact: list[list[str]],
) -> dict[str, Any]:
    replicated = stack.holders[Modality.FACE]
    # Memory, timings and the kill are measured on one replica of each shard.
    shards = [replicas[0] for replicas in replicated]
    baseline = (
        ray.remote(IndexHolder)
        .options(num_cpus=0, scheduling_strategy="SPREAD")
        .remote(settings.model_copy(update={"index_shards": 1, "index_replicas": 1}), Modality.FACE)
    )
    empty = _summed(ray.get([s.__ray_call__.remote(_held_bytes) for s in shards]))
    one = _load([[baseline]], vectors[:BASELINE_VECTORS], labels, positions, version)
    ray.kill(baseline, no_restart=True)
    sharded = _load(replicated, vectors, labels, positions, version, marks=(BASELINE_VECTORS,))
    # Every replica's build done before memory is read and timings are taken: one still
    # training would hold the CPUs they share.
    kinds = _grown([r for replicas in replicated for r in replicas])
    build_s = sharded[VECTORS]
    held = _summed(ray.get([s.__ray_call__.remote(_held_bytes) for s in shards]))
    per_vector = {key: (held[key] - empty[key]) / VECTORS for key in held}
    names_disk = sum(ray.get([s.__ray_call__.remote(_names_disk_bytes) for s in shards]))

    ids = [_item(int(j)) for j in query_rows]
    noop_ms = _noop_serve_ms(ids, settings.api_max_ongoing_requests)
    single_ms, found = _api_searches(ids, 1)
    parallel_ms, _ = _api_searches(ids, CONCURRENCY)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, exact, strict=True)]))
    queries = vectors[query_rows]
    # One shard at a time, as a shard with cores of its own searches; then all at once, four
    # busy loops on this machine's two cores.
    inside = [ray.get(s.__ray_call__.remote(_shard_search_ms, version, queries)) for s in shards]
    median_ms = float(np.median([np.percentile(ms, 50) for ms in inside]))
    spun = [ray.get(s.__ray_call__.remote(_spin_ms, median_ms, len(inside[0]))) for s in shards]
    at_once = ray.get([s.__ray_call__.remote(_shard_search_ms, version, queries) for s in shards])
    owners = ShardMap(SHARDS)
    owned = [_item(j) for j, (p, _) in enumerate(positions) if owners.owner(p) == 0]
    recovery = _recovery(shards[0], owned)
    single_ms_after, _ = _api_searches(ids[:20], 1)
    return {
        "index_type": sorted(set(kinds)),
        "recall_at_10": recall,
        "search_c1": _percentiles(single_ms),
        "noop_serve_c1": _percentiles(noop_ms),
        f"search_c{CONCURRENCY}": _percentiles(parallel_ms),
        "search_c1_after_recovery": _percentiles(single_ms_after),
        "shard_search_p99_ms": max(float(np.percentile(ms, 99)) for ms in inside),
        "shard_search_p50_ms": median_ms,
        "shard_spin_p99_ms": max(float(np.percentile(ms, 99)) for ms in spun),
        "shard_search_at_once_p99_ms": max(float(np.percentile(ms, 99)) for ms in at_once),
        # The shards' own memory: the object store's pages are the node's, sized on their own.
        "bytes_per_vector": per_vector["own"],
        "resident_bytes_per_vector": per_vector,
        "names_disk_bytes_per_vector": names_disk / VECTORS,
        "build_s": build_s,
        "ingest_items_per_s": {
            "sharded": BASELINE_VECTORS / sharded[BASELINE_VECTORS],
            "one_holder": BASELINE_VECTORS / one[BASELINE_VECTORS],
            "sharded_all": VECTORS / sharded[VECTORS],
        },
        **recovery,
        "projection": _projection(per_vector["own"], inside),
    }


class _Querying(threading.Thread):
    """Searches by id through the API, one at a time, until stopped; one that reached the lost
    node is sent again, as a load balancer would (bench/balancer.py)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self._ids = ids
        self.answered = 0
        self.failed: list[str] = []
        self.resent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{HTTP_PORT}", timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                body = {"modality": "face", "item": {"id": self._ids[n % len(self._ids)]}, "k": K}
                n += 1
                try:
                    response, resent = balancer.post(client, "/v1/search", body)
                except httpx.TransportError as error:
                    self.failed.append(type(error).__name__)
                    continue
                self.resent += resent
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failed.append(f"{response.status_code} {response.text[:200]}")


def _node_loss(stack: Stack, worker_node: int, ids: list[str]) -> dict[str, Any]:
    """The worker node killed (its raylet and every actor on it, as a lost machine) while
    queries run: how many failed, and how long until every shard replica answers again."""
    replicas = [r for shards in stack.holders.values() for rs in shards for r in rs]
    # No ingest here replays what a restarted replica's checkpoint lacks: checkpoint them all.
    ray.get([r.snapshot.remote() for r in replicas])
    # The driver runs on the head, so the replicas elsewhere are the worker node's.
    head = ray.get_runtime_context().get_node_id()
    where = ray.get([r.__ray_call__.remote(_node_and_pid) for r in replicas])
    lost = {n: pid for n, (node, pid) in enumerate(where) if node != head}
    querying = _Querying(ids)
    querying.start()
    time.sleep(2.0)
    os.killpg(worker_node, signal.SIGKILL)
    started = time.perf_counter()
    for n, pid in lost.items():
        # Back once answered by a process of its own again: a call can reach the dying one.
        while True:
            try:
                if ray.get(replicas[n].__ray_call__.remote(_node_and_pid))[1] != pid:
                    break
            except ray.exceptions.RayActorError:
                if time.perf_counter() - started > RECOVERY_TIMEOUT_S:
                    raise
            time.sleep(0.2)
    back_s = time.perf_counter() - started
    time.sleep(AFTER_NODE_LOSS_S)
    querying.stop.set()
    querying.join()
    return {
        "replicas": len(replicas),
        "replicas_lost": len(lost),
        "queries": querying.answered + len(querying.failed),
        "failed": len(querying.failed),
        "failures": querying.failed[:5],
        "resent": querying.resent,
        "replicas_back_s": back_s,
    }


def _projection(bytes_per_vector: float, inside: list[list[float]]) -> dict[str, Any]:
    """10M and 100M vectors at this run's density, a node holding VECTORS / nodes in
    SHARDS / nodes shards: memory is linear in the vectors, and a shard of the same size
    searches in the same time (a query visits 1/8 of its lists, so its time grows with the
    shard's vectors, not with the number of shards)."""
    per_node = VECTORS // NODES
    return {
        f"{total // 1_000_000}M": {
            "nodes": total // per_node,
            "vectors_per_node": per_node,
            "gib_per_node": per_node * bytes_per_vector / 2**30,
            "shard_search_p99_ms": max(float(np.percentile(ms, 99)) for ms in inside),
        }
        for total in (10_000_000, 100_000_000)
    }


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    budget = TARGET_BYTES_FACTOR * (results["dim"] + 8)
    return {
        "recall_at_10": [TARGET_RECALL_AT_10, results["recall_at_10"] >= TARGET_RECALL_AT_10],
        "shard_search_p99_ms": [
            TARGET_SHARD_P99_MS,
            results["shard_search_p99_ms"] <= TARGET_SHARD_P99_MS,
        ],
        "api_search_p99_ms_c1": [
            TARGET_API_P99_MS,
            results["search_c1"]["p99_ms"] <= TARGET_API_P99_MS,
        ],
        "bytes_per_vector": [budget, results["bytes_per_vector"] <= budget],
        "recovery_s": [
            TARGET_RECOVERY_S,
            results["recovery_s"] <= TARGET_RECOVERY_S
            and results["lost"] == 0
            and results["duplicated"] == 0,
        ],
        "node_loss_failed_queries": [0, results["node_loss"]["failed"] == 0],
    }


def _markdown(r: dict[str, Any]) -> str:
    rate = r["ingest_items_per_s"]
    c8 = r[f"search_c{CONCURRENCY}"]
    noop = r["noop_serve_c1"]
    loss = r["node_loss"]
    resident = r["resident_bytes_per_vector"]
    lines = [
        f"## Sharded index at scale ({r['vectors']:,} × {r['dim']}-d face-shaped vectors, "
        f"{r['shards']} shards of {r['replicas']} replicas over {r['nodes']} Ray nodes on one "
        "machine)",
        "",
        "| | measured | target | met |",
        "|---|---|---|---|",
        f"| index type | {', '.join(r['index_type'])} | | |",
        f"| recall@10 vs exact (through the API) | {r['recall_at_10']:.3f} | ≥ 0.95 "
        f"| {_yes(r, 'recall_at_10')} |",
        f"| search inside a shard, p50 / p99 ms | {r['shard_search_p50_ms']:.2f} / "
        f"{r['shard_search_p99_ms']:.2f} | p99 ≤ 10 | {_yes(r, 'shard_search_p99_ms')} |",
        f"| … baseline: a CPU spin of the median search's length in the same processes, p99 ms "
        f"| {r['shard_spin_p99_ms']:.2f} | | |",
        f"| … every shard searching at once ({r['shards']} loops on this machine's "
        f"{os.cpu_count()} cores), p99 ms | {r['shard_search_at_once_p99_ms']:.2f} | | |",
        f"| search through the API, c = 1, p50 / p99 ms | {r['search_c1']['p50_ms']:.1f} / "
        f"{r['search_c1']['p99_ms']:.1f} | p99 ≤ 50 | {_yes(r, 'api_search_p99_ms_c1')} |",
        f"| … baseline: the same requests to a no-op Serve app on the same cluster (Serve's "
        f"own HTTP path), c = 1, p50 / p99 ms | {noop['p50_ms']:.1f} / {noop['p99_ms']:.1f} "
        "| | |",
        f"| search through the API, c = {CONCURRENCY}, p50 / p99 ms | {c8['p50_ms']:.1f} / "
        f"{c8['p99_ms']:.1f} | | |",
        f"| resident bytes per vector in a shard replica, its own (API replicas: none) | "
        f"{r['bytes_per_vector']:.0f} | ≤ {r['targets']['bytes_per_vector'][0]:.0f} "
        f"| {_yes(r, 'bytes_per_vector')} |",
        f"| … and the node's object store pages it maps, bytes per vector; all resident | "
        f"{resident['object_store']:.0f}; {resident['all']:.0f} | | |",
        f"| item ids and labels on a shard's local disk (SQLite), bytes per vector | "
        f"{r['names_disk_bytes_per_vector']:.0f} | | |",
        f"| load and build, s | {r['build_s']:.0f} | | |",
        f"| apply rate, first {BASELINE_VECTORS:,}: {r['shards']} shards / one holder, items/s "
        f"| {rate['sharded']:,.0f} / {rate['one_holder']:,.0f} "
        f"(ratio {rate['sharded'] / rate['one_holder']:.2f}) | | |",
        f"| a shard killed (kill -9) until it answers again ({r['vectors'] // r['shards']:,} "
        f"vectors), s; lost / duplicated | {r['recovery_s']:.1f}; {r['lost']} / "
        f"{r['duplicated']} | ≤ 60; 0 / 0 | {_yes(r, 'recovery_s')} |",
        f"| the worker node killed while querying, with {loss['replicas_lost']} of "
        f"{loss['replicas']} shard replicas: failed / answered queries (sent again "
        f"as a balancer would: {loss['resent']}); every replica back, s | "
        f"{loss['failed']} / {loss['queries'] - loss['failed']}; {loss['replicas_back_s']:.1f} "
        f"| 0 failed | {_yes(r, 'node_loss_failed_queries')} |",
        *(
            f"| {name} vectors at this density: nodes, GiB of shards a node, shard p99 ms | "
            f"{p['nodes']:,}, {p['gib_per_node']:.2f}, {p['shard_search_p99_ms']:.1f} | | |"
            for name, p in r["projection"].items()
        ),
        "",
    ]
    return "\n".join(lines)


def _yes(r: dict[str, Any], target: str) -> str:
    return "yes" if r["targets"][target][1] else "no"


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
