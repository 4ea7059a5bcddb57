"""A clean stop keeps the state: the next start serves the same index without replaying it."""

import time

import ray

from schemas.items import Modality

SETTLE_S = 5


def holder_state(stack) -> dict:
    """Each shard replica's size and offsets."""
    return {
        (m, shard, replica): (ray.get(h.size.remote()), ray.get(h.offsets.remote()))
        for m, shards in stack.holders.items()
        for shard, replicas in enumerate(shards)
        for replica, h in enumerate(replicas)
    }


def test_restart_resumes_from_the_snapshots(stack, api, demo_data):
    before = holder_state(stack)
    assert stack.index_size(Modality.FACE) >= 360

    stack.stop()
    stack.start()

    assert holder_state(stack) == before
    time.sleep(SETTLE_S)
    assert stack.counts()["indexed"] == 0, "a restart must not re-embed what the index holds"
    probe = demo_data.indexed[Modality.AUDIO][5]
    response = api.post("/v1/search", json={"modality": "audio", "item": {"id": probe.id}, "k": 1})
    assert response.status_code == 200
    assert response.json()["matches"][0]["id"] == probe.id
