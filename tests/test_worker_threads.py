"""A local stack's Ray workers let torch's OpenMP threads sleep between layers."""

import os

import ray


def test_workers_leave_idle_cores_to_each_other(stack):
    """Ingest, queries and retraining run torch on the same cores; threads that spin while
    they wait would take those cores from one another."""
    policy = ray.remote(num_cpus=0)(lambda: os.environ.get("OMP_WAIT_POLICY"))

    assert ray.get(policy.remote(), timeout=60) == "PASSIVE"
