"""A Ray cluster of several nodes on this machine, made by `ray start` as on real machines: for
the cluster test and the scale benchmark. Each node is its own process group, so killing it
takes the node away at once, as a lost machine does."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# `ray start` of Ray 2.60 turns token authentication on; every node and driver must use it.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE"}
# Set by `pipeline` to keep a local Ray on loopback; a Ray started with it refuses other nodes.
SINGLE_NODE_FLAG = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
NODE_START_TIMEOUT_S = 60
# Ray gives a new raylet 30 s to register; a GCS busy with a lost node can take longer.
NODE_START_ATTEMPTS = 2


def cluster_env() -> dict[str, str]:
    """This process's environment as a cluster's node or driver needs it."""
    return {k: v for k, v in os.environ.items() if k != SINGLE_NODE_FLAG} | RAY_ENV


class RayNode:
    """One `ray start --block` in its own process group, started without waiting for it
    (`wait_started`), so that a caller can go on while a node joins."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self._args = args
        self._start("w")

    def _start(self, mode: str) -> None:
        with open(self.log, mode) as out:
            self.process = subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address=127.0.0.1", *self._args],
                env=cluster_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started_by = time.monotonic() + NODE_START_TIMEOUT_S

    def wait_started(self) -> "RayNode":
        """Until the node runs; a `ray start` that failed is run again (its output appended),
        NODE_START_ATTEMPTS times in all, as an orchestrator restarts a node that did not come
        up."""
        attempts = 1
        while "Ray runtime started" not in self.log.read_text():
            if self.process.poll() is not None:
                if attempts == NODE_START_ATTEMPTS:
                    raise RuntimeError(f"ray start failed: {self.log.read_text()[-3000:]}")
                self.kill()  # whatever that start left running in its group
                attempts += 1
                self._start("a")
            if time.monotonic() > self._started_by:
                raise TimeoutError(f"ray start did not finish: {self.log}")
            time.sleep(0.5)
        return self

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # a group already empty
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextmanager
def local_cluster(
    logs: Path, port: int, head_cpus: int, workers: Mapping[str, int]
) -> Iterator[dict[str, RayNode]]:
    """A head (`head_cpus` CPUs for work) and a worker per name with its CPUs, one after
    another (two joining at once time out on a small machine); every node is killed on the way
    out, workers first (a head killed first leaves them retrying)."""
    nodes: dict[str, RayNode] = {}
    try:
        nodes["head"] = RayNode(
            logs / "head.log",
            "--head",
            f"--port={port}",
            f"--num-cpus={head_cpus}",
            "--include-dashboard=false",
        ).wait_started()
        for name, cpus in workers.items():
            nodes[name] = worker_node(logs, port, name, cpus).wait_started()
        yield nodes
    finally:
        for node in reversed(list(nodes.values())):
            if node.process.poll() is None:
                node.kill()


def worker_node(logs: Path, port: int, name: str, cpus: int) -> RayNode:
    """A worker joining the head at `port`, not yet waited for."""
    return RayNode(logs / f"{name}.log", f"--address=127.0.0.1:{port}", f"--num-cpus={cpus}")
