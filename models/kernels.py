"""Numba-jitted similarity kernels, each behind a typed public function with a NumPy reference.

- :func:`row_similarities` turns one course's decayed co-occurrence row into similarities
  (cosine, Jaccard or lift) and keeps the top K: run where the course's row lives.
- :func:`score_candidates` accumulates, over the user's recent courses, the similarities of their
  neighbours into a score per catalogue item, remembering which recent course contributed most
  (the "because you watched X" reason): run on every worker from the broadcast neighbour index.
- :func:`pair_increments` is the co-occurrence update of one user event: how much each pair
  (changed course, other recent course) gains when the user's engagement with a course rises.

The ``*_numpy`` functions are the plain-NumPy references the tests compare against and the
benchmark measures the kernels with.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "MEASURES",
    "pair_increments",
    "pair_increments_numpy",
    "row_similarities",
    "row_similarities_numpy",
    "score_candidates",
    "score_candidates_numpy",
    "top_k",
    "warm_up",
]

#: similarity measure name -> kernel code
MEASURES = {"cosine": 0, "jaccard": 1, "lift": 2}


# ---------------------------------------------------------------------------------------------
# similarity of one row


@njit(cache=True, nogil=True)
def _row_similarities(co: np.ndarray, other_pop: np.ndarray, self_pop: float, total: float,
                      measure: int, k: int, min_co: float) -> tuple[np.ndarray, np.ndarray]:
    n = co.shape[0]
    sims = np.empty(n, dtype=np.float64)
    for i in range(n):
        c = co[i]
        p = other_pop[i]
        if measure == 0:
            denom = np.sqrt(self_pop * p)
        elif measure == 1:
            denom = self_pop + p - c
        else:
            denom = self_pop * p / total
        if c < min_co or p <= 0.0 or self_pop <= 0.0 or not denom > 0.0:
            sims[i] = -1.0
        else:
            sims[i] = c / denom
    # partial selection sort of the k best (k is small): O(n k), no allocation per element
    kk = min(k, n)
    idx = np.empty(kk, dtype=np.int64)
    out = np.empty(kk, dtype=np.float64)
    m = 0
    for _ in range(kk):
        best = -1
        best_v = -1.0
        for i in range(n):
            v = sims[i]
            if v > best_v:
                best_v = v
                best = i
        if best < 0:
            break
        idx[m] = best
        out[m] = best_v
        sims[best] = -1.0
        m += 1
    return idx[:m], out[:m]


def row_similarities(co: np.ndarray, other_pop: np.ndarray, self_pop: float, *, total: float = 1.0,
                     measure: str = "cosine", k: int = 20, min_co: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of a course from its co-occurrence row.

    ``co[i]`` is the (decayed) co-occurrence with the i-th other course, ``other_pop[i]`` that
    course's (decayed) popularity, ``self_pop`` this course's, ``total`` the sum of popularity
    (used by lift). Returns ``(positions into co, similarities)``, best first, ties by position.
    """
    if measure not in MEASURES:
        msg = f"measure must be one of {sorted(MEASURES)}, got {measure!r}"
        raise ValueError(msg)
    co = np.ascontiguousarray(co, dtype=np.float64)
    other_pop = np.ascontiguousarray(other_pop, dtype=np.float64)
    if co.shape != other_pop.shape:
        msg = f"co and other_pop must have the same shape, got {co.shape} and {other_pop.shape}"
        raise ValueError(msg)
    return _row_similarities(co, other_pop, float(self_pop), float(total), MEASURES[measure], int(k), float(min_co))


def row_similarities_numpy(co: np.ndarray, other_pop: np.ndarray, self_pop: float, *, total: float = 1.0,
                           measure: str = "cosine", k: int = 20, min_co: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation of :func:`row_similarities` in plain NumPy."""
    co = np.asarray(co, dtype=np.float64)
    other_pop = np.asarray(other_pop, dtype=np.float64)
    if measure == "cosine":
        denom = np.sqrt(self_pop * other_pop)
    elif measure == "jaccard":
        denom = self_pop + other_pop - co
    else:
        denom = self_pop * other_pop / total
    valid = (co >= min_co) & (other_pop > 0) & (self_pop > 0) & (denom > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sims = np.where(valid, co / np.where(valid, denom, 1.0), -1.0)
    order = np.lexsort((np.arange(len(sims)), -sims))[:k]
    order = order[sims[order] > -1.0]
    return order.astype(np.int64), sims[order]


# ---------------------------------------------------------------------------------------------
# scoring candidates for a user


@njit(cache=True, nogil=True)
def _score_candidates(items: np.ndarray, weights: np.ndarray, neigh_idx: np.ndarray, neigh_sim: np.ndarray,
                      n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.zeros(n_items, dtype=np.float64)
    best = np.full(n_items, -1, dtype=np.int64)
    best_v = np.zeros(n_items, dtype=np.float64)
    k = neigh_idx.shape[1]
    for a in range(items.shape[0]):
        src = items[a]
        w = weights[a]
        for j in range(k):
            c = neigh_idx[src, j]
            if c < 0:
                break
            v = w * neigh_sim[src, j]
            scores[c] += v
            if v > best_v[c]:
                best_v[c] = v
                best[c] = a
    return scores, best, best_v


def score_candidates(items: np.ndarray, weights: np.ndarray, neigh_idx: np.ndarray, neigh_sim: np.ndarray,
                     n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Score every item from the neighbour lists of the user's recent ``items`` (with ``weights``).

    ``neigh_idx[i]`` are item i's neighbours (``-1`` pads), ``neigh_sim[i]`` their similarities.
    Returns ``(scores, reason)`` where ``reason[c]`` is the position in ``items`` of the recent
    course that contributed most to ``scores[c]`` (``-1`` when nothing did).
    """
    items = np.ascontiguousarray(items, dtype=np.int64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if items.shape != weights.shape:
        msg = f"items and weights must have the same shape, got {items.shape} and {weights.shape}"
        raise ValueError(msg)
    scores, best, _ = _score_candidates(items, weights, neigh_idx, neigh_sim, int(n_items))
    return scores, best


def score_candidates_numpy(items: np.ndarray, weights: np.ndarray, neigh_idx: np.ndarray, neigh_sim: np.ndarray,
                           n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation of :func:`score_candidates` in plain NumPy."""
    items = np.asarray(items, dtype=np.int64)
    scores = np.zeros(n_items)
    best = np.full(n_items, -1, dtype=np.int64)
    best_v = np.zeros(n_items)
    for a, (src, w) in enumerate(zip(items, weights, strict=True)):
        idx = neigh_idx[src]
        ok = idx >= 0
        idx = idx[ok]
        vals = w * neigh_sim[src][ok]
        np.add.at(scores, idx, vals)
        better = vals > best_v[idx]
        best_v[idx[better]] = vals[better]
        best[idx[better]] = a
    return scores, best


# ---------------------------------------------------------------------------------------------
# co-occurrence increments of one engagement change


@njit(cache=True, nogil=True)
def _pair_increments(old_w: float, new_w: float, other_w: np.ndarray) -> np.ndarray:
    out = np.empty(other_w.shape[0], dtype=np.float64)
    for i in range(other_w.shape[0]):
        o = other_w[i]
        out[i] = min(new_w, o) - min(old_w, o)
    return out


def pair_increments(old_w: float, new_w: float, other_w: np.ndarray) -> np.ndarray:
    """Gain of each pair (this course, other course) when a user's engagement weight with this
    course rises from ``old_w`` to ``new_w``; a pair's weight is the smaller of the two
    engagements, so the sum over a user's history equals min-weight co-occurrence in batch.
    """
    if new_w < old_w:
        msg = f"engagement only rises: new_w={new_w} < old_w={old_w}"
        raise ValueError(msg)
    return _pair_increments(float(old_w), float(new_w), np.ascontiguousarray(other_w, dtype=np.float64))


def pair_increments_numpy(old_w: float, new_w: float, other_w: np.ndarray) -> np.ndarray:
    """Reference implementation of :func:`pair_increments` in plain NumPy."""
    other_w = np.asarray(other_w, dtype=np.float64)
    return np.minimum(new_w, other_w) - np.minimum(old_w, other_w)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first (ties by index)."""
    if k <= 0 or scores.size == 0:
        return np.empty(0, dtype=np.int64)
    k = min(k, scores.size)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))]


def warm_up() -> None:
    """Compile every kernel now (a worker calls this before consuming, not on its first event)."""
    row_similarities(np.ones(3), np.ones(3), 1.0, k=2)
    score_candidates(np.zeros(1, dtype=np.int64), np.ones(1), np.full((1, 2), -1, dtype=np.int64), np.zeros((1, 2)), 1)
    pair_increments(0.0, 1.0, np.ones(2))
