"""Verification metrics on pair distances (numpy only, so the service can report them anywhere).

Convention throughout: a pair is called "same" when its distance E <= threshold; FAR is the
share of impostor pairs called same, FRR the share of genuine pairs called different.
"""

import numpy as np

from pipeline.embed.energy import Energy


def roc_auc(scores_same: np.ndarray, scores_diff: np.ndarray) -> float:
    """P(score of a genuine pair > score of an impostor pair), ties counting half.

    Scores grow with similarity: pass −distance. This is the Mann–Whitney statistic, exact
    with ties, in O((n + m) log m).
    """
    same = np.asarray(scores_same, dtype=np.float64)
    diff = np.sort(np.asarray(scores_diff, dtype=np.float64))
    if not len(same) or not len(diff):
        raise ValueError("AUC needs at least one genuine and one impostor score")
    below = np.searchsorted(diff, same, side="left")
    at_or_below = np.searchsorted(diff, same, side="right")
    return float((below + at_or_below).sum() / (2.0 * len(same) * len(diff)))


def far_frr(distances: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float]:
    distances, same = np.asarray(distances), np.asarray(same, dtype=bool)
    accepted = distances <= threshold
    return float(accepted[~same].mean()), float((~accepted[same]).mean())


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((np.asarray(distances) <= threshold) == np.asarray(same, dtype=bool)).mean())


def eer(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(equal error rate, threshold at which FAR and FRR meet).

    Rates only change at observed distances; the candidate cut with the smallest |FAR − FRR|
    (then the smallest FAR + FRR) wins, and the threshold is placed midway to the next observed
    distance so it does not sit on a training point.
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("EER needs at least one genuine and one impostor pair")
    cuts = np.unique(distances)
    far, frr = roc_points(distances, same)
    best = _eer_position(far, frr)
    upper = cuts[best + 1] if best + 1 < len(cuts) else cuts[best]
    return float((far[best] + frr[best]) / 2.0), float((cuts[best] + upper) / 2.0)


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> float:
    """Share of genuine pairs accepted at the loosest threshold whose FAR stays <= `far`.

    At most floor(far · impostors) impostors may be accepted, so the cut sits just below the
    next impostor distance; a genuine pair tied with that impostor counts as rejected.
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    impostors = np.sort(distances[~same])
    allowed = int(np.floor(far * len(impostors)))
    if allowed >= len(impostors):
        return 1.0
    return float((distances[same] < impostors[allowed]).mean())


def roc_points(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, FRR) at every observed distance as the threshold, loosening from the tightest."""
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    cuts = np.unique(distances)
    far = np.searchsorted(np.sort(distances[~same]), cuts, side="right") / (~same).sum()
    frr = 1.0 - np.searchsorted(np.sort(distances[same]), cuts, side="right") / same.sum()
    return far, frr


# Operating points a recorded curve keeps at most: enough to draw, small enough for a record.
CURVE_POINTS = 100


def curve_points(
    distances: np.ndarray, same: np.ndarray, max_points: int = CURVE_POINTS
) -> dict[str, list[float]]:
    """`roc_points` thinned to at most `max_points` (FAR, FRR) pairs, FAR rising, for a record.

    Points are kept evenly along the curve's length (|ΔFAR| + |ΔFRR|), so the steep and flat
    parts are both drawn; the two ends and the point nearest the EER are always kept.
    """
    if max_points < 3:
        raise ValueError("a curve needs room for its two ends and its EER point")
    far, frr = roc_points(distances, same)
    travelled = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(far)) + np.abs(np.diff(frr)))))
    # The marks start at the first point; the last point and the EER point make up the rest.
    marks = np.linspace(0.0, travelled[-1], max_points - 2)
    chosen = np.searchsorted(travelled, marks, side="left").clip(0, len(far) - 1)
    # Sorted unique positions: FAR never falls along `roc_points`, so the thinned curve keeps it.
    kept = np.unique(np.concatenate((chosen, [len(far) - 1, _eer_position(far, frr)])))
    return {"far": far[kept].round(6).tolist(), "frr": frr[kept].round(6).tolist()}


def _eer_position(far: np.ndarray, frr: np.ndarray) -> int:
    """Where FAR and FRR meet: the smallest |FAR − FRR|, then the smallest FAR + FRR."""
    return int(np.lexsort((far + frr, np.abs(far - frr)))[0])


def pair_distances(
    embeddings: np.ndarray, labels: np.ndarray, energy: Energy
) -> tuple[np.ndarray, np.ndarray]:
    """(E, same) for every pair i < j of unit embeddings.

    Goes through squared L2 and `energy.from_squared_l2`, the same path a FAISS search takes,
    so a threshold calibrated here means the same thing on index results.
    """
    d2 = _squared_l2_matrix(embeddings)
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), k=1)
    return energy.from_squared_l2(d2[i, j]), labels[i] == labels[j]


def nearest_neighbour_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-NN label accuracy: how often a search's top match has the right label.

    Squared L2 ranks neighbours the same way as either energy does on unit vectors.
    """
    d2 = _squared_l2_matrix(embeddings)
    np.fill_diagonal(d2, np.inf)
    labels = np.asarray(labels)
    return float((labels[d2.argmin(axis=1)] == labels).mean())


def one_shot_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """1-shot N-way identification: enrol one sample per identity, name every other sample by
    its nearest enrolment, averaged over enrolment rounds (round r enrols each identity's r-th
    sample) so the score does not hinge on one lucky or unlucky enrolment shot.

    N is the number of identities with at least two samples (a single sample could be
    enrolled but never queried); rounds run while each of them has an r-th sample. NaN when
    fewer than two identities qualify.
    """
    labels = np.asarray(labels)
    names, counts = np.unique(labels, return_counts=True)
    names = names[counts >= 2]
    if len(names) < 2:
        return float("nan")
    members = [np.flatnonzero(labels == name) for name in names]
    kept = np.concatenate(members)
    d2 = _squared_l2_matrix(embeddings)
    correct = total = 0
    for r in range(min(len(m) for m in members)):
        enrolled = np.array([m[r] for m in members])
        queries = np.setdiff1d(kept, enrolled)
        guesses = names[d2[np.ix_(queries, enrolled)].argmin(axis=1)]
        correct += int((guesses == labels[queries]).sum())
        total += len(queries)
    return correct / total


def _squared_l2_matrix(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    norms = (x * x).sum(axis=1)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * x @ x.T, 0.0)
