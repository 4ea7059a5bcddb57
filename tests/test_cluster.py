"""A Ray cluster of several nodes on this machine, made by `ray start` as on real machines:
`twinstream up` joins it (TWINSTREAM_RAY_ADDRESS), and a whole worker node — its raylet and
every actor on it — is taken away while items stream and queries run.

Four index shards of two replicas each are spread over the nodes, a shard's replicas on
different nodes. Afterwards every replica holds exactly the live ids, each once and with its
newest bytes, and the deleted ids stay deleted. Queries go on throughout and none fails: a
shard replica on the lost node is failed over to its other replica. A query whose connection
went through an HTTP proxy on that node, or whose API replica was there (Serve answers it 500
without a problem body), is sent again, as a load balancer in front of the proxies
does.
"""

import base64
import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench import balancer
from bench.local_cluster import (
    RAY_ENV,
    SINGLE_NODE_FLAG,
    RayNode,
    cluster_env,
    local_cluster,
    worker_node,
)
from pipeline.data.orl import iter_orl
from pipeline.settings import Settings
from tests.fixtures_stream import Stream, converged_problems, produce_ops
from tests.fixtures_up import UpProcess

RAY_PORT = int(os.environ.get("TWINSTREAM_TEST_RAY_PORT", "26379"))
CONVERGE_TIMEOUT_S = 240
QUERY_PAUSE_S = 0.2
# A query whose connection was dropped twice, counted beside the HTTP statuses.
DROPPED = 0
SHARDS = 4
REPLICAS = 2
HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
# Asks every face shard replica, from a driver of its own on the cluster, what it holds of
# the ids given on stdin (JSON): [size, ids present] per replica.
REPLICA_CONTENTS = """
import json, sys
import ray
from pipeline.index.handles import NAMESPACE, every_replica, holder_handles
from pipeline.settings import Settings
from schemas.items import Modality

ids = json.load(sys.stdin)
ray.init(address=sys.argv[1], namespace=NAMESPACE, log_to_driver=False)
shards = Settings(index_shards=int(sys.argv[2]), index_replicas=int(sys.argv[3]))
replicas = every_replica(holder_handles(shards)[Modality.FACE])
found = ray.get([r.contains.remote(ids) for r in replicas])
sizes = ray.get([r.size.remote() for r in replicas])
print(json.dumps([[size, [i for i, f in zip(ids, held) if f]] for size, held in zip(sizes, found)]))
"""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, RayNode]]:
    """A head with no CPU for work (so every ingest actor runs on a worker) and two workers
    with one CPU each (so the two ingest actors land one on each). The head declares a node
    dead after 3 missed health checks 1 s apart (Ray's default: 5, 3 s apart), so the test
    waits less for the failover it is about."""
    for name, value in HEALTH_CHECKS.items():
        monkeypatch.setenv(name, value)
    with local_cluster(tmp_path, RAY_PORT, 0, {"a": 1, "b": 1}) as nodes:
        yield nodes


class Queries(threading.Thread):
    """Searches all the time, counting the answers by status."""

    def __init__(self, url: str, probe: bytes) -> None:
        super().__init__(daemon=True)
        self._url = url
        self._query = {
            "modality": "face",
            "item": {"data": base64.b64encode(probe).decode()},
            "k": 3,
        }
        self.statuses: collections.Counter[int] = collections.Counter()
        self.failures: list[tuple[int, str, str | None]] = []
        self.last: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=60) as api:
            while not self.stop.is_set():
                try:
                    response = self._post(api)
                except httpx.TransportError as error:
                    self.statuses[DROPPED] += 1
                    self.failures.append((DROPPED, type(error).__name__, None))
                    continue
                self.statuses[response.status_code] += 1
                self.last = [*self.last[-19:], response.status_code]
                if response.status_code != 200:
                    retry = response.headers.get("retry-after")
                    self.failures.append((response.status_code, response.text, retry))
                time.sleep(QUERY_PAUSE_S)

    def _post(self, api: httpx.Client) -> httpx.Response:
        return balancer.post(api, "/v1/search", self._query)[0]


def _replica_contents(ids: list[str]) -> list[tuple[int, set[str]]]:
    """Each face shard replica's size and which of `ids` it holds."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            REPLICA_CONTENTS,
            f"127.0.0.1:{RAY_PORT}",
            str(SHARDS),
            str(REPLICAS),
        ],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        env=cluster_env(),
        timeout=120,
        check=True,
    )
    return [(size, set(held)) for size, held in json.loads(done.stdout.splitlines()[-1])]


def test_a_lost_node_loses_and_duplicates_nothing_and_fails_no_query(
    own_settings: Settings,
    cluster: dict[str, RayNode],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    for name, value in RAY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(SINGLE_NODE_FLAG, raising=False)
    settings = own_settings.model_copy(
        update={
            "ray_address": f"127.0.0.1:{RAY_PORT}",
            "ingest_actors": 2,
            "index_shards": SHARDS,
            "index_replicas": REPLICAS,
            "http_port": own_settings.http_port + 20,
        }
    )
    rng = random.Random(int(time.time()))
    stream = Stream("cluster")
    up = UpProcess(settings, 0)
    queries = Queries(f"http://127.0.0.1:{settings.http_port}", next(iter_orl()).read_bytes())
    try:
        up.wait_ready()
        queries.start()
        produce_ops(settings, stream.round(0, rng))
        producer = threading.Thread(target=produce_ops, args=(settings, stream.round(1, rng)))
        producer.start()
        time.sleep(rng.uniform(0.5, 3.0))
        cluster["a"].kill()
        cluster["c"] = worker_node(tmp_path, RAY_PORT, "c", 1)
        producer.join()
        produce_ops(settings, stream.round(2, rng))
        cluster["c"].wait_started()
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=60) as api:
            deadline = time.monotonic() + CONVERGE_TIMEOUT_S
            while problems := converged_problems(api, stream):
                assert time.monotonic() < deadline, problems[:10]
                time.sleep(2)
        # Twenty more answers, all after the index converged.
        answered = queries.statuses.total()
        while queries.statuses.total() < answered + 20:
            assert queries.is_alive()
            time.sleep(QUERY_PAUSE_S)
        queries.stop.set()
        queries.join()
        assert queries.failures == [], (queries.statuses, queries.failures)
        assert queries.statuses[200] >= 20
        # Every replica of every shard holds exactly its share of the live ids, and no
        # deleted one: the replicas of a shard hold the same.
        contents = _replica_contents([*stream.live, *stream.deleted])
        live = set(stream.live)
        for shard in range(SHARDS):
            replicas = contents[shard * REPLICAS : (shard + 1) * REPLICAS]
            assert all(held == replicas[0][1] for _, held in replicas), shard
            assert all(size == len(replicas[0][1]) for size, _ in replicas), shard
        assert sum(len(held) for _, held in contents) == REPLICAS * len(live)
        assert set().union(*(held for _, held in contents)) == live
    finally:
        queries.stop.set()
        if up.process.poll() is None:
            up.stop()
