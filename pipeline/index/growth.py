"""When an index outgrows exact search, and how its IVF replacement is built.

Exact (flat) search is the right index while it is small: no training, perfect
recall. Past a size threshold its cost grows linearly per query, so an IVF
index is trained from the vectors already stored and swapped in. IVF keeps what
the service needs from the flat one: `add_with_ids` and `remove_ids` for
upserts and tombstones, and, with a hash-table direct map (ids are sparse after
deletes), `reconstruct` by id for queries that name an indexed item.
"""

import math

import faiss
import numpy as np

# k-means wants about this many training points per list (FAISS warns below 39).
POINTS_PER_LIST = 39
# Another build starts once the index has grown by this factor since the last one,
# so the number of lists keeps up with the data.
REGROW_FACTOR = 4
# Share of the lists a query visits: recall close to flat search on clustered
# embeddings at a fraction of its distance computations.
PROBE_SHARE = 8


def ivf_lists(n: int) -> int:
    """About 4·√n lists, as the FAISS guidelines suggest, and never under-trained."""
    return max(1, min(int(4 * math.sqrt(n)), n // POINTS_PER_LIST))


def build_ivf(vectors: np.ndarray, ids: np.ndarray) -> faiss.IndexIVFFlat:
    """An IVF index holding `vectors` under `ids`, trained on those same vectors."""
    lists = ivf_lists(len(vectors))
    # The factory makes the index own its quantizer, as a deserialized one does.
    ivf = faiss.index_factory(vectors.shape[1], f"IVF{lists},Flat", faiss.METRIC_L2)
    ivf.train(vectors)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    ivf.add_with_ids(vectors, ids)
    ivf.nprobe = max(1, lists // PROBE_SHARE)
    return ivf


def is_ivf(index: faiss.Index) -> bool:
    return isinstance(index, faiss.IndexIVF)
