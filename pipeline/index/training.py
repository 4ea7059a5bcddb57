"""Training a shard's compressed index in a Ray task instead of the shard's own process.

k-means is the one heavy BLAS user on the index's path; run in the shard, it would leave BLAS
scratch memory resident there for good and hold the shard's CPU for the whole training. The
task's worker exits after one training (`max_calls=1`), so its memory goes back too. It asks
for no CPU: a cluster whose CPUs are all held by actors must still train.
"""

import faiss
import numpy as np
import ray

from pipeline.index import growth


@ray.remote(num_cpus=0, max_calls=1)
def _train(sample: np.ndarray, lists: int) -> np.ndarray:
    return growth.to_blob(growth.train(sample, lists))


def train_in_a_task(sample: np.ndarray, lists: int) -> faiss.IndexIVFScalarQuantizer:
    """`growth.train`, run by a Ray task; raises what the task raised."""
    trained = growth.from_blob(ray.get(_train.remote(sample, lists)))
    if not isinstance(trained, faiss.IndexIVFScalarQuantizer):
        raise TypeError("the training task returned a flat index")
    return trained
