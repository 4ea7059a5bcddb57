"""How the service's roles share a Ray cluster: ingest actors, API replicas and retraining.

Every role that embeds or trains wants a GPU when the cluster has one, and the encoders are
small (a face forward pass is a few MFLOPs), so one device has room for all of them. What must
not happen is a role reserving a whole device that another then waits for forever: on a
one-GPU node, a training run asking for the GPU the ingest actor holds never starts. So each
role's process gets an equal slice, sized so that the slices pack onto the devices there are.
A slice is Ray's accounting only: the processes share the device's time and memory.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.settings import Settings

# Besides the ingest actors and API replicas: the retraining coordinator (it re-embeds the
# retained items on a model switch) and the training run it starts.
RETRAIN_PROCESSES = 2


@dataclass(frozen=True)
class Placement:
    ingest_actors: int
    # GPUs each ingest actor, API replica and retraining process reserves.
    ingest_gpus: float
    api_gpus: float
    retrain_gpus: float


def default_ingest_actors(resources: Mapping[str, float], partitions: int) -> int:
    """One per GPU, else one per CPU but one (left for the API and the holders), never more
    consumers than partitions."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    return max(1, min(partitions, gpus if gpus else cpus - 1))


def gpu_slice(free: float, processes: int) -> float:
    """The largest 1/k of a device such that `processes` slices fit in `free` devices.

    Not free/processes: Ray places each slice on one device, so slices of 2/3 would leave a
    third of every device unused and need three devices for three processes; 1/k tiles one.
    Ray keeps a quantity to 1/10,000 by dropping the rest (two requests of 0.50006 fit in one
    unit on Ray 2.60), so k slices of 1/k never add up to more than a device.
    """
    if free <= 0 or processes <= 0:
        return 0.0
    return 1.0 / math.ceil(processes / free)


def plan_placement(resources: Mapping[str, float], settings: Settings) -> Placement:
    """Explicit INGEST_NUM_GPUS / API_NUM_GPUS are kept; the roles left unset share what those
    leave free (nothing free: they run on the CPU). The slices are sure to pack when what is
    free is whole devices; remainders spread over several devices may hold fewer of them."""
    actors = settings.ingest_actors or default_ingest_actors(resources, settings.topic_partitions)
    free = float(resources.get("GPU", 0))
    sharing = RETRAIN_PROCESSES
    if settings.ingest_num_gpus is None:
        sharing += actors
    else:
        free -= actors * settings.ingest_num_gpus
    if settings.api_num_gpus is None:
        sharing += settings.api_replicas
    else:
        free -= settings.api_replicas * settings.api_num_gpus
    share = gpu_slice(free, sharing)
    return Placement(
        ingest_actors=actors,
        ingest_gpus=share if settings.ingest_num_gpus is None else settings.ingest_num_gpus,
        api_gpus=share if settings.api_num_gpus is None else settings.api_num_gpus,
        retrain_gpus=share,
    )
