"""Which kind of index an index should be at its size, and how the compressed kind is built.

Exact (flat) search is the right index while it is small: no training, perfect recall.
Past a size threshold its cost grows linearly per query and it holds 4·d bytes a vector,
so a compressed index is trained from the vectors already stored and swapped in: IVF with
8-bit scalar-quantised residuals (d bytes a vector) proposes candidates, which are
re-ranked with exact distances from float16 copies (pipeline/index/refined.py). It keeps
what the service needs from the flat one: `add_with_ids` and `remove_ids` for upserts and
tombstones, and `reconstruct` by id for queries that name an indexed item.

Scalar rather than product quantisation: SQ8's error is a fraction of each dimension's
range whatever the data, while how well short PQ codes rank neighbours depends on how
tight the clusters are, and PQ needs thousands of training points and per-list lookup
tables (docs/benchmarks.md#index-scale has the comparison).

An index serialises to one blob whatever its kind (`to_blob`, `from_blob`); IVF-Flat
indexes of snapshots taken before the compressed kind existed still load and work, and are
replaced by the compressed kind at their next build.
"""

import math

import faiss
import numpy as np

from pipeline.index.refined import RefinedIVF, RefineStore, as_uint8

# k-means wants about this many training points per list (FAISS warns below 39).
POINTS_PER_LIST = 39
# The coarse k-means trains on at most this many points per list (a random sample): more
# moves the centroids little and costs build time linearly.
TRAIN_POINTS_PER_LIST = 64
# Another build starts once the index has grown by this factor since the last one,
# so the number of lists keeps up with the data.
REGROW_FACTOR = 4
# Share of the lists a query visits: recall close to flat search on clustered
# embeddings at a fraction of its distance computations.
PROBE_SHARE = 8
# Candidates per wanted neighbour that the codes propose for exact re-ranking.
REFINE_FACTOR = 4


def ivf_lists(n: int) -> int:
    """About 4·√n lists, as the FAISS guidelines suggest, and never under-trained."""
    return max(1, min(int(4 * math.sqrt(n)), n // POINTS_PER_LIST))


def build_compressed(vectors: np.ndarray, ids: np.ndarray) -> RefinedIVF:
    """An IVF-SQ8 index with exact re-ranking holding `vectors` under `ids`, trained on them."""
    order = np.argsort(ids, kind="stable")
    vectors, ids = np.ascontiguousarray(vectors[order], dtype=np.float32), ids[order]
    n, dim = vectors.shape
    lists = ivf_lists(n)
    # The factory makes the index own its quantizer, as a deserialized one does.
    ivf = faiss.index_factory(dim, f"IVF{lists},SQ8", faiss.METRIC_L2)
    ivf.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
    ivf.train(vectors)
    ivf.add_with_ids(vectors, ids)
    ivf.nprobe = max(1, lists // PROBE_SHARE)
    store = RefineStore(dim, n)
    store.add(ids, vectors)
    return RefinedIVF(ivf, store, REFINE_FACTOR)


def kind(index: faiss.Index | RefinedIVF) -> str:
    if isinstance(index, RefinedIVF):
        return "ivf-sq8"
    return "ivf" if isinstance(index, faiss.IndexIVF) else "flat"


def to_blob(index: faiss.Index | RefinedIVF) -> np.ndarray:
    """The index as uint8s, whatever its kind."""
    if isinstance(index, RefinedIVF):
        return np.frombuffer(index.to_bytes(), dtype=np.uint8)
    return faiss.serialize_index(index)


def from_blob(blob: bytes | np.ndarray) -> faiss.Index | RefinedIVF:
    if RefinedIVF.is_blob(blob):
        return RefinedIVF.from_bytes(blob)
    return faiss.deserialize_index(as_uint8(blob))
