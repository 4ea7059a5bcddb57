"""A Ray cluster of several nodes on this machine, made by `ray start` as on real machines:
`twinstream up` joins it (TWINSTREAM_RAY_ADDRESS), and a whole worker node — its raylet and
every actor on it — is taken away while items stream and queries run.

The index shards are spread over the nodes. Afterwards the index holds exactly the live ids,
each once and with its newest bytes, and the deleted ids stay deleted. Queries go on
throughout: while an index shard that was on the lost node restarts, a query that needs it may
answer 503 with Retry-After (a shard has no replica to fail over to yet), and a query whose
HTTP proxy was on that node loses its connection; every other answer is a 200, and so is every
answer once the shard is back.
"""

import base64
import collections
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.local_cluster import RAY_ENV, SINGLE_NODE_FLAG, RayNode, local_cluster, worker_node
from pipeline.data.orl import iter_orl
from pipeline.settings import Settings
from services.api.problems import RETRY_AFTER_S, UNAVAILABLE
from tests.fixtures_stream import Stream, converged_problems, produce_ops
from tests.fixtures_up import UpProcess

RAY_PORT = int(os.environ.get("TWINSTREAM_TEST_RAY_PORT", "26379"))
CONVERGE_TIMEOUT_S = 240
QUERY_PAUSE_S = 0.2
# A query whose connection was dropped, counted beside the HTTP statuses.
DROPPED = 0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, RayNode]]:
    """A head with no CPU for work (so every ingest actor runs on a worker) and two workers
    with one CPU each (so the two ingest actors land one on each)."""
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
                    response = api.post("/v1/search", json=self._query)
                except httpx.TransportError as error:
                    # The HTTP proxy this connection went through was on the lost node.
                    self.statuses[DROPPED] += 1
                    self.failures.append((DROPPED, type(error).__name__, None))
                    continue
                self.statuses[response.status_code] += 1
                self.last = [*self.last[-19:], response.status_code]
                if response.status_code != 200:
                    retry = response.headers.get("retry-after")
                    self.failures.append((response.status_code, response.text, retry))
                time.sleep(QUERY_PAUSE_S)


def test_a_lost_node_loses_and_duplicates_nothing_and_queries_come_back(
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
            "index_shards": 4,
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
        unavailable = (503, UNAVAILABLE, str(RETRY_AFTER_S))
        assert all(
            status == DROPPED or (status, json.loads(body)["detail"], retry) == unavailable
            for status, body, retry in queries.failures
        ), queries.failures
        assert queries.last == [200] * 20, (queries.statuses, queries.failures)
    finally:
        queries.stop.set()
        if up.process.poll() is None:
            up.stop()
