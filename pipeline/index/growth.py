"""Which kind of FAISS index an index should be at its size, how the compressed kind is built,
and what both kinds answer by key.

Exact (flat) search is the right index while it is small: no training, perfect recall.
Past a size threshold its cost grows linearly per query and it holds 4·d bytes a vector,
so a compressed index is trained from the vectors already stored and swapped in: IVF with
6-bit scalar-quantised residuals, 3·d/4 bytes a vector, searched on its codes alone. It keeps
what the service needs from the flat one: `add_with_ids` and `remove_ids` for upserts and
tombstones, and a vector by key for queries that name an indexed item — found by a scan of
the lists' keys in FAISS, since FAISS's own id → list map (a hash table) would cost more bytes
a vector than the keys themselves.

Scalar rather than product quantisation: SQ's error is a fraction of each dimension's
range whatever the data, while how well short PQ codes rank neighbours depends on how
tight the clusters are, and PQ needs thousands of training points and per-list lookup
tables. 6 bits rather than 8: a quarter fewer bytes for a distance error that moves
`same` on a few pairs in 10,000 (docs/benchmarks.md#index-scale has both comparisons).
"""

import math
from collections.abc import Callable

import faiss
import numpy as np

# k-means wants about this many training points per list (FAISS warns below 39).
POINTS_PER_LIST = 39
# The coarse k-means trains on at most this many points per list (a random sample): more
# moves the centroids little and costs build time linearly.
TRAIN_POINTS_PER_LIST = 64
# Another build starts once the index has grown by this factor since the last one,
# so the number of lists keeps up with the data.
REGROW_FACTOR = 4
# A query visits about this many times √lists of the lists: recall close to flat search on
# clustered embeddings, and the share of the index one reads falls as the index grows.
PROBE_FACTOR = 3.0
# A compressed index's lists are refitted (`fit_lists`) with this share of spare capacity
# each, and again once the index has grown by REFIT_GROWTH: FAISS grows a full list by
# doubling it, which would leave most lists with spare capacity near their size.
LIST_HEADROOM = 0.05
REFIT_GROWTH = 0.025
# Each dimension's code range is the trained residuals' range widened by this share on each
# side: a later item outside it would be clipped, and items keep arriving after a build.
CODE_RANGE_MARGIN = 0.1
SAMPLE_SEED = 24
# A batch size no search or add reaches: FAISS's switch to BLAS never happens.
NEVER = 2**31 - 1

# Bits a dimension of a compressed index's codes.
CODE = "SQ6"
# What a compressed index is called by its codes (an index loaded from an older snapshot keeps
# the codes it was built with).
KINDS = {faiss.ScalarQuantizer.QT_6bit: "ivf-sq6", faiss.ScalarQuantizer.QT_8bit: "ivf-sq8"}

# (training sample, lists) -> an empty trained index.
Trainer = Callable[[np.ndarray, int], faiss.IndexIVFScalarQuantizer]


def ivf_lists(n: int) -> int:
    """About 4·√n lists, as the FAISS guidelines suggest, and never under-trained."""
    return max(1, min(int(4 * math.sqrt(n)), n // POINTS_PER_LIST))


def flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dim))


def train(sample: np.ndarray, lists: int) -> faiss.IndexIVFScalarQuantizer:
    """An empty compressed index of `lists` lists, its coarse centroids and code ranges trained
    on `sample`."""
    # The factory makes the index own its quantizer, as a deserialized one does.
    ivf = faiss.index_factory(sample.shape[1], f"IVF{lists},{CODE}", faiss.METRIC_L2)
    ivf.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
    ivf.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
    ivf.sq.rangestat_arg = CODE_RANGE_MARGIN
    ivf.train(sample)
    return ivf


def build_compressed(
    vectors: np.ndarray, keys: np.ndarray, trainer: Trainer = train
) -> faiss.IndexIVFScalarQuantizer:
    """A compressed index holding `vectors` under `keys`, trained by `trainer` on a sample of
    them."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    lists = ivf_lists(len(vectors))
    ivf = trainer(training_sample(vectors, lists), lists)
    ivf.add_with_ids(vectors, keys)
    ivf.nprobe = probes(lists)
    return ivf


def probes(lists: int, factor: float = PROBE_FACTOR) -> int:
    """How many of an index's `lists` a query visits."""
    return min(lists, math.ceil(factor * math.sqrt(lists)))


def training_sample(vectors: np.ndarray, lists: int) -> np.ndarray:
    """The rows k-means would sample itself, taken here so that only they travel to a trainer
    elsewhere."""
    wanted = lists * TRAIN_POINTS_PER_LIST
    if len(vectors) <= wanted:
        return vectors
    rows = np.random.default_rng(SAMPLE_SEED).choice(len(vectors), wanted, replace=False)
    return vectors[np.sort(rows)]


def without_blas() -> None:
    """Process-wide: FAISS computes distances without BLAS. A thread that once ran BLAS keeps
    megabytes of its scratch buffer resident for good, a fixed cost in every shard; searches
    and adds then run slower per batch, and training belongs elsewhere."""
    faiss.cvar.distance_compute_blas_threshold = NEVER


def fit_lists(ivf: faiss.IndexIVF) -> None:
    """Replace the index's lists by copies with LIST_HEADROOM spare capacity each."""
    lists = ivf.invlists
    fitted = faiss.ArrayInvertedLists(ivf.nlist, lists.code_size)
    for lst, size in _lists(ivf):
        # From empty a list's storage is allocated at exactly the size asked for, and a
        # shrink keeps it: this leaves `size` entries with the headroom spare.
        fitted.resize(lst, size + math.ceil(size * LIST_HEADROOM))
        fitted.update_entries(lst, 0, size, lists.get_ids(lst), lists.get_codes(lst))
        fitted.resize(lst, size)
    ivf.replace_invlists(fitted, True)
    # The index owns the lists now; Python must not free them too.
    fitted.this.disown()


def kind(index: faiss.Index) -> str:
    return KINDS[index.sq.qtype] if isinstance(index, faiss.IndexIVF) else "flat"


def contents(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(keys, float32 vectors) of everything in the index; decoded from the codes of a
    compressed one."""
    if not isinstance(index, faiss.IndexIVF):
        keys = faiss.vector_to_array(index.id_map)
        return keys, index.reconstruct_batch(keys)
    keys, vectors = [], []
    for lst, size in _lists(index):
        keys.append(_list_keys(index, lst, size))
        codes = faiss.rev_swig_ptr(index.invlists.get_codes(lst), size * index.code_size)
        decoded = index.sq.decode(codes.reshape(size, index.code_size))
        vectors.append(decoded + index.quantizer.reconstruct(lst) if index.by_residual else decoded)
    if not keys:
        return np.empty(0, dtype=np.int64), np.empty((0, index.d), dtype=np.float32)
    return np.concatenate(keys), np.concatenate(vectors)


def vector(index: faiss.Index, key: int) -> np.ndarray:
    """The vector stored under `key` (KeyError if none)."""
    if not isinstance(index, faiss.IndexIVF):
        try:
            return index.reconstruct(key)
        except RuntimeError as missing:
            raise KeyError(key) from missing
    lst = _list_holding(index, key)
    at = np.flatnonzero(_list_keys(index, lst, index.invlists.list_size(lst)) == key)
    out = np.empty(index.d, dtype=np.float32)
    index.reconstruct_from_offset(lst, int(at[0]), faiss.swig_ptr(out))
    return out


def _list_holding(index: faiss.IndexIVF, key: int) -> int:
    """The list that holds `key` (KeyError if none), found in one FAISS scan: one query per
    list, each probing only its own list and seeing only `key`. (FAISS refuses a filtered
    search that reports list positions, and a Python loop over the lists is several times
    slower.)"""
    lists = index.nlist
    params = among(index, np.asarray([key], dtype=np.int64))
    params.nprobe = 1
    queries = np.zeros((lists, index.d), dtype=np.float32)
    probes = np.arange(lists, dtype=np.int64)
    probe_distances = np.zeros(lists, dtype=np.float32)
    distances = np.empty(lists, dtype=np.float32)
    found = np.empty(lists, dtype=np.int64)
    index.search_preassigned_c(
        lists,
        faiss.swig_ptr(queries),
        1,
        faiss.swig_ptr(probes),
        faiss.swig_ptr(probe_distances),
        faiss.swig_ptr(distances),
        faiss.swig_ptr(found),
        False,
        params,
    )
    holding = np.flatnonzero(found == key)
    if not len(holding):
        raise KeyError(key)
    return int(holding[0])


def among(index: faiss.Index, keys: np.ndarray) -> faiss.SearchParameters:
    """Search parameters that restrict a search to `keys`, in every list of an IVF index:
    a filtered search must not miss a candidate for the lists it did not probe."""
    selector = faiss.IDSelectorBatch(keys)
    if isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(sel=selector, nprobe=index.nlist)
    else:
        params = faiss.SearchParameters(sel=selector)
    # The parameters hold the selector by pointer: keep it alive as long as they are.
    params.referenced_selector = selector
    return params


def to_blob(index: faiss.Index) -> np.ndarray:
    """The index as uint8s, whatever its kind."""
    return faiss.serialize_index(index)


def from_blob(blob: bytes | np.ndarray) -> faiss.Index:
    data = blob if isinstance(blob, np.ndarray) else np.frombuffer(blob, dtype=np.uint8)
    index = faiss.deserialize_index(data)
    if not isinstance(index, faiss.IndexIVFScalarQuantizer | faiss.IndexIDMap2):
        raise ValueError(f"an index of kind {type(index).__name__} is not one this service makes")
    if isinstance(index, faiss.IndexIVF):
        # A snapshot keeps the probe count it was saved with; the current rule applies.
        index.nprobe = probes(index.nlist)
    return index


def _lists(index: faiss.IndexIVF) -> list[tuple[int, int]]:
    sizes = [(lst, index.invlists.list_size(lst)) for lst in range(index.nlist)]
    return [(lst, size) for lst, size in sizes if size]


def _list_keys(index: faiss.IndexIVF, lst: int, size: int) -> np.ndarray:
    return faiss.rev_swig_ptr(index.invlists.get_ids(lst), size)
