"""How a stack's roles share the cluster: ingest actor count, and GPU slices that always fit."""

import pytest

from pipeline.placement import Placement, default_ingest_actors, plan_placement
from pipeline.settings import Settings


@pytest.mark.parametrize(
    ("resources", "partitions", "actors"),
    [
        ({"CPU": 2.0}, 4, 1),  # this machine: one core left for the API and the holders
        ({"CPU": 16.0}, 4, 4),  # never more consumers than partitions
        ({"CPU": 16.0, "GPU": 2.0}, 4, 2),  # one per GPU
        ({"CPU": 1.0}, 4, 1),
    ],
)
def test_default_ingest_actors(resources, partitions, actors):
    assert default_ingest_actors(resources, partitions) == actors


def _slices(placement: Placement, settings: Settings) -> list[float]:
    """Every GPU reservation the stack makes: ingest actors, API replicas, the retraining
    coordinator and its training run."""
    return (
        [placement.ingest_gpus] * placement.ingest_actors
        + [placement.api_gpus] * settings.api_replicas
        + [placement.retrain_gpus] * 2
    )


def _fit(slices: list[float], devices: int) -> bool:
    """Place each slice whole on one device, as Ray does with fractional GPUs."""
    free = [1.0] * devices
    for size in sorted(slices, reverse=True):
        device = next((d for d, left in enumerate(free) if left >= size - 1e-9), None)
        if device is None:
            return False
        free[device] -= size
    return True


@pytest.mark.parametrize("gpus", [1, 2, 3, 8])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
@pytest.mark.parametrize("partitions", [1, 4, 12])
def test_every_role_gets_a_gpu_slice_and_the_slices_fit(gpus, replicas, partitions):
    # The case this exists for: one GPU, whose ingest actor used to reserve all of it, so a
    # training run asking for a GPU waited forever and the API embedded on the CPU.
    # One shard: shards are not placed by this plan, and one partition holds no more.
    settings = Settings(api_replicas=replicas, topic_partitions=partitions, index_shards=1)
    placement = plan_placement({"CPU": 16.0, "GPU": float(gpus)}, settings)
    slices = _slices(placement, settings)
    assert min(slices) > 0
    assert max(slices) <= 1
    assert _fit(slices, gpus)


def test_without_gpus_everything_runs_on_the_cpu():
    placement = plan_placement({"CPU": 2.0}, Settings())
    assert placement == Placement(ingest_actors=1, ingest_gpus=0, api_gpus=0, retrain_gpus=0)


def test_explicit_gpus_are_kept_and_the_rest_share_what_they_leave():
    one_gpu = {"CPU": 16.0, "GPU": 1.0}
    whole = plan_placement(one_gpu, Settings(ingest_num_gpus=1))
    assert (whole.ingest_gpus, whole.api_gpus, whole.retrain_gpus) == (1, 0, 0)

    no_api = plan_placement(one_gpu, Settings(api_num_gpus=0))
    assert no_api.api_gpus == 0
    assert no_api.ingest_gpus == no_api.retrain_gpus == pytest.approx(1 / 3)

    half = Settings(ingest_num_gpus=0.5)
    shared = plan_placement(one_gpu, half)
    assert shared.ingest_gpus == 0.5
    assert _fit(_slices(shared, half), 1)
