"""Numba-jitted similarity kernels, each behind a typed public function with a NumPy reference.

- :func:`row_similarities` turns one course's decayed co-occurrence row into similarities
  (cosine, Jaccard or lift) and keeps the top K: run where the course's row lives;
  :func:`row_similarities_batch` does it for all rows that changed in a tick, in one call.
- :func:`score_candidates` accumulates, over the user's recent courses, the similarities of their
  neighbours into a score per catalogue item, remembering which recent course contributed most
  (the "because you watched X" reason): run on every worker from the broadcast neighbour index.
- :func:`pair_increments` is the co-occurrence update of one user event: how much each pair
  (changed course, other recent course) gains when the user's engagement with a course rises;
  :func:`pair_increments_batch` does it for every rise of a batch of events, in one call, and
  :func:`cooc_gains_batch` (what the ingest agent calls) also merges them per course row, re-based
  to each course's latest event time in the batch.

The ``*_numpy`` functions are the plain-NumPy references the tests compare against and the
benchmark measures the kernels with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = [
    "MEASURES",
    "cooc_gains_batch",
    "cooc_gains_batch_numpy",
    "pair_increments",
    "pair_increments_batch",
    "pair_increments_batch_numpy",
    "pair_increments_numpy",
    "rank_candidates",
    "rank_candidates_numpy",
    "rank_users",
    "rank_users_numpy",
    "row_similarities",
    "row_similarities_batch",
    "row_similarities_batch_numpy",
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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _similarities(co: np.ndarray, p: np.ndarray, sp: np.ndarray, total: float, measure: int, min_co: float,
                  out: np.ndarray) -> None:
    """``out[i]`` = the similarity of ``co[i]`` between a course of popularity ``sp[i]`` and one of
    ``p[i]``, or -1.0 where it is undefined (below ``min_co``, unknown popularity, denominator <= 0).

    The measure is chosen once, outside the loops, and each loop is branch-free (a select), so
    LLVM vectorises the square roots and divisions. The formulas are the NumPy reference's, term
    for term (``c / sqrt(sp * p)``, ``c / (sp + p - c)``, ``c / (sp * p / total)``): the same
    IEEE operations in the same order, so the results are identical, not just close.
    """
    n = co.shape[0]
    if measure == 0:
        for i in range(n):
            c = co[i]
            q = p[i]
            s = sp[i]
            d = np.sqrt(s * q)
            out[i] = c / d if (c >= min_co) & (q > 0.0) & (s > 0.0) & (d > 0.0) else -1.0
    elif measure == 1:
        for i in range(n):
            c = co[i]
            q = p[i]
            s = sp[i]
            d = s + q - c
            out[i] = c / d if (c >= min_co) & (q > 0.0) & (s > 0.0) & (d > 0.0) else -1.0
    else:
        for i in range(n):
            c = co[i]
            q = p[i]
            s = sp[i]
            d = s * q / total
            out[i] = c / d if (c >= min_co) & (q > 0.0) & (s > 0.0) & (d > 0.0) else -1.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _top_k_of_row(sims: np.ndarray, lo: int, hi: int, k: int, kept_v: np.ndarray, kept_i: np.ndarray) -> int:
    """Top-``k`` of the similarities ``sims[lo:hi]`` (-1.0 = undefined) into ``kept_v/kept_i[1:m + 1]``
    (values, positions into ``sims``), best first with ties by position; returns ``m``.

    ``kept_v[0]`` must be ``+inf``: a sentinel, so an insertion's shift loop needs one comparison
    per step and no bounds test. The first ``k`` defined entries are inserted in order; after
    that the worst kept value is a threshold and an entry enters only if strictly better (one
    comparison rejects the rest; an equal value loses to the kept one, which has the lower
    position), shifting the worse ones down and dropping the last. O(n + accepted · k) with
    accepted ≈ k · ln(n / k) on unordered rows; nothing is sorted at the end.
    """
    if k <= 0:
        return 0
    m = 0
    i = lo
    while i < hi and m < k:
        v = sims[i]
        if v > -1.0:
            j = m + 1
            while kept_v[j - 1] < v:
                kept_v[j] = kept_v[j - 1]
                kept_i[j] = kept_i[j - 1]
                j -= 1
            kept_v[j] = v
            kept_i[j] = i
            m += 1
        i += 1
    if m < k:
        return m
    worst = kept_v[k]
    for t in range(i, hi):
        v = sims[t]
        if v > worst:
            j = k
            while kept_v[j - 1] < v:
                kept_v[j] = kept_v[j - 1]
                kept_i[j] = kept_i[j - 1]
                j -= 1
            kept_v[j] = v
            kept_i[j] = t
            worst = kept_v[k]
    return m


@njit(cache=True, nogil=True, error_model="numpy")
def _row_similarities(co: np.ndarray, other_pop: np.ndarray, self_pop: float, total: float,
                      measure: int, k: int, min_co: float) -> tuple[np.ndarray, np.ndarray]:
    n = co.shape[0]
    kk = max(min(k, n), 0)
    sims = np.empty(n, dtype=np.float64)
    _similarities(co, other_pop, np.full(n, self_pop), total, measure, min_co, sims)
    kept_v = np.empty(kk + 1, dtype=np.float64)
    kept_i = np.empty(kk + 1, dtype=np.int64)
    kept_v[0] = np.inf
    m = _top_k_of_row(sims, 0, n, kk, kept_v, kept_i)
    return kept_i[1:m + 1].copy(), kept_v[1:m + 1].copy()


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


def _similarities_numpy(co: np.ndarray, other_pop: np.ndarray, self_pop: Any, total: float, measure: str,
                        min_co: float) -> np.ndarray:
    """Each entry's similarity (``-1`` where it has none), the references' one formula per measure."""
    if measure == "cosine":
        denom = np.sqrt(self_pop * other_pop)
    elif measure == "jaccard":
        denom = self_pop + other_pop - co
    else:
        denom = self_pop * other_pop / total
    valid = (co >= min_co) & (other_pop > 0) & (self_pop > 0) & (denom > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(valid, co / np.where(valid, denom, 1.0), -1.0)


def row_similarities_numpy(co: np.ndarray, other_pop: np.ndarray, self_pop: float, *, total: float = 1.0,
                           measure: str = "cosine", k: int = 20, min_co: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation of :func:`row_similarities` in plain NumPy."""
    co = np.asarray(co, dtype=np.float64)
    sims = _similarities_numpy(co, np.asarray(other_pop, dtype=np.float64), self_pop, total, measure, min_co)
    order = np.lexsort((np.arange(len(sims)), -sims))[:k]
    order = order[sims[order] > -1.0]
    return order.astype(np.int64), sims[order]


# ---------------------------------------------------------------------------------------------
# similarity of all changed rows at once (one call per tick)


@njit(cache=True, nogil=True, error_model="numpy")
def _row_similarities_batch(indptr: np.ndarray, cols: np.ndarray, co: np.ndarray, self_pop: np.ndarray,
                            pop: np.ndarray, total: float, measure: int, k: int,
                            min_co: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = indptr.shape[0] - 1
    n = co.shape[0]
    if rows < 0 or indptr[0] != 0 or indptr[rows] != n or cols.shape[0] != n:
        msg = "indptr must run from 0 to len(co) == len(cols)"
        raise ValueError(msg)
    if self_pop.shape[0] != rows:
        msg = "self_pop needs one value per row"
        raise ValueError(msg)
    # validated once up front; the passes below trust the indices
    row_pop = np.empty(n, dtype=np.float64)  # self_pop of each entry's row
    for r in range(rows):
        lo = indptr[r]
        hi = indptr[r + 1]
        if hi < lo:
            msg = "indptr must not decrease"
            raise ValueError(msg)
        s = self_pop[r]
        for i in range(lo, hi):
            row_pop[i] = s
    n_pop = pop.shape[0]
    other_pop = np.empty(n, dtype=np.float64)  # the other courses' popularities, gathered once
    for i in range(n):
        c = cols[i]
        if c < 0 or c >= n_pop:
            msg = "column index out of range of pop"
            raise ValueError(msg)
        other_pop[i] = pop[c]
    sims = np.empty(n, dtype=np.float64)
    _similarities(co, other_pop, row_pop, total, measure, min_co, sims)  # every entry, one SIMD pass

    kk = max(k, 0)
    idx = np.full((rows, kk), -1, dtype=np.int64)
    out = np.zeros((rows, kk), dtype=np.float64)
    counts = np.zeros(rows, dtype=np.int64)
    kept_v = np.empty(kk + 1, dtype=np.float64)
    kept_i = np.empty(kk + 1, dtype=np.int64)
    kept_v[0] = np.inf
    for r in range(rows):
        lo = indptr[r]
        hi = indptr[r + 1]
        m = _top_k_of_row(sims, lo, hi, min(kk, hi - lo), kept_v, kept_i)
        counts[r] = m
        for t in range(m):
            idx[r, t] = cols[kept_i[t + 1]]
            out[r, t] = kept_v[t + 1]
    return idx, out, counts


def row_similarities_batch(indptr: np.ndarray, cols: np.ndarray, co: np.ndarray, self_pop: np.ndarray,
                           pop: np.ndarray, *, total: float = 1.0, measure: str = "cosine", k: int = 20,
                           min_co: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` neighbours of many rows at once, from their co-occurrence rows in CSR form.

    Row ``r`` holds ``co[indptr[r]:indptr[r + 1]]`` with the courses ``cols[...]`` (indices into
    ``pop``, every course's popularity); ``self_pop[r]`` is the row's own popularity. Returns
    ``(neighbours, similarities, counts)``: ``neighbours[r, :counts[r]]`` are column indices, best
    first with ties by position in the row (as :func:`row_similarities`), padded with ``-1`` (and
    similarity 0). An empty row gives count 0.
    """
    if measure not in MEASURES:
        msg = f"measure must be one of {sorted(MEASURES)}, got {measure!r}"
        raise ValueError(msg)
    return _row_similarities_batch(
        np.ascontiguousarray(indptr, dtype=np.int64), np.ascontiguousarray(cols, dtype=np.int64),
        np.ascontiguousarray(co, dtype=np.float64), np.ascontiguousarray(self_pop, dtype=np.float64),
        np.ascontiguousarray(pop, dtype=np.float64), float(total), MEASURES[measure], int(k), float(min_co))


def row_similarities_batch_numpy(indptr: np.ndarray, cols: np.ndarray, co: np.ndarray, self_pop: np.ndarray,
                                 pop: np.ndarray, *, total: float = 1.0, measure: str = "cosine", k: int = 20,
                                 min_co: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference implementation of :func:`row_similarities_batch`, vectorised the NumPy way.

    Every similarity at once, one segmented ordering (``np.lexsort`` on row, -similarity,
    position), the first ``k`` of each row scattered into the output: no loop over rows.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    co = np.asarray(co, dtype=np.float64)
    rows = indptr.size - 1
    k = max(int(k), 0)
    row_of = np.repeat(np.arange(rows), np.diff(indptr))
    sp = np.asarray(self_pop, dtype=np.float64)[row_of]
    sims = _similarities_numpy(co, np.asarray(pop, dtype=np.float64)[cols], sp, total, measure, min_co)
    position = np.arange(co.size)
    order = np.lexsort((position, -sims, row_of))
    rank = position - indptr[row_of]  # rows stay contiguous, so row_of[order] == row_of
    keep = (rank < k) & (sims[order] > -1.0)
    chosen = order[keep]
    r, rk = row_of[keep], rank[keep]
    idx = np.full((rows, k), -1, dtype=np.int64)
    out = np.zeros((rows, k), dtype=np.float64)
    idx[r, rk] = cols[chosen]
    out[r, rk] = sims[chosen]
    return idx, out, np.bincount(r, minlength=rows).astype(np.int64)


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


@njit(cache=True, nogil=True, error_model="numpy")  # no zero-division checks: 4x faster
def _rank_candidates(items: np.ndarray, weights: np.ndarray, total_w: float, neigh_idx: np.ndarray,
                     neigh_sim: np.ndarray, n_items: int, pop_norm: np.ndarray, trending: np.ndarray,
                     cats: np.ndarray, affinity: np.ndarray, published: np.ndarray, new_after: float, now: int,
                     seen: np.ndarray, w_similar: float, w_popular: float, w_new: float,
                     k: int) -> np.ndarray:
    scores, best, _ = _score_candidates(items, weights, neigh_idx, neigh_sim, n_items)
    any_new = False
    for i in range(n_items):
        if published[i] > new_after and published[i] <= now:
            any_new = True
            break
    # every course's total, the parts added in the order the NumPy reference adds them (two
    # loops, so the "any new course" test is not in the inner loop)
    total = np.empty(n_items, dtype=np.float64)
    if any_new:
        for i in range(n_items):
            c = cats[i]
            ca = affinity[c] if c >= 0 else 0.0
            p = published[i]
            is_new = 1.0 if p > new_after and p <= now else 0.0
            total[i] = (w_similar * (scores[i] / total_w) + w_popular * ca * pop_norm[i]
                        + w_new * is_new * max(ca, 0.2) + trending[i])
    else:
        for i in range(n_items):
            c = cats[i]
            ca = affinity[c] if c >= 0 else 0.0
            total[i] = w_similar * (scores[i] / total_w) + w_popular * ca * pop_norm[i] + trending[i]
    for i in range(n_items):  # not published yet, or already touched or bought: never recommended
        if published[i] > now:
            total[i] = -np.inf
    for s in range(seen.shape[0]):
        total[seen[s]] = -np.inf
    kk = min(k, n_items)
    top = np.empty(kk, dtype=np.int64)
    top_v = np.empty(kk, dtype=np.float64)
    m = 0
    for i in range(n_items):
        t = total[i]
        if kk == 0:
            continue
        if m == kk and not t > top_v[m - 1]:  # not better than the worst kept (ties: lower index kept)
            continue
        j = m if m < kk else kk - 1
        while j > 0 and top_v[j - 1] < t:
            top_v[j] = top_v[j - 1]
            top[j] = top[j - 1]
            j -= 1
        top_v[j] = t
        top[j] = i
        if m < kk:
            m += 1
    out = np.empty((m, 7), dtype=np.float64)  # index, total, similar, popular, new, trending, reason
    for r in range(m):
        i = top[r]
        c = cats[i]
        ca = affinity[c] if c >= 0 else 0.0
        out[r, 0] = i
        out[r, 1] = top_v[r]
        out[r, 2] = w_similar * (scores[i] / total_w)
        out[r, 3] = w_popular * ca * pop_norm[i]
        is_new = 1.0 if published[i] > new_after and published[i] <= now else 0.0
        out[r, 4] = w_new * is_new * max(ca, 0.2) if any_new else 0.0
        out[r, 5] = trending[i]
        out[r, 6] = best[i]
    return out


def rank_candidates(items: np.ndarray, weights: np.ndarray, neigh_idx: np.ndarray, neigh_sim: np.ndarray,
                    n_items: int, pop_norm: np.ndarray, trending: np.ndarray, cats: np.ndarray,
                    affinity: np.ndarray, published: np.ndarray, *, now: int, new_after: float,
                    seen: np.ndarray, w_similar: float, w_popular: float, w_new: float,
                    k: int) -> np.ndarray:
    """The hybrid ranking's scores of every course and its ``k`` best, in one call.

    Per course ``i``: ``similar = w_similar * cf[i] / sum(weights)`` (``cf``, ``reason`` as
    :func:`score_candidates`), ``popular = w_popular * affinity[cat[i]] * pop_norm[i]`` (0 for no
    category), ``new = w_new * [new_after < published[i] <= now] * max(affinity, 0.2)``,
    ``trending[i]``; ``total`` is their sum, ``-inf`` for a course in ``seen`` or not published
    yet. Returns a ``(m, 7)`` array of the ``k`` best rows ``(index, total, similar, popular, new,
    trending, reason)``, best first, ties by lower index (:func:`rank_candidates_numpy` is the
    same in NumPy).
    """
    items = np.ascontiguousarray(items, dtype=np.int64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if items.shape != weights.shape:
        msg = f"items and weights must have the same shape, got {items.shape} and {weights.shape}"
        raise ValueError(msg)
    total_w = float(weights.sum()) or 1.0
    return _rank_candidates(items, weights, total_w, neigh_idx, neigh_sim, int(n_items),
                              np.ascontiguousarray(pop_norm, dtype=np.float64),
                              np.ascontiguousarray(trending, dtype=np.float64),
                              np.ascontiguousarray(cats[:n_items], dtype=np.int64),
                              np.ascontiguousarray(affinity, dtype=np.float64),
                              np.ascontiguousarray(published[:n_items], dtype=np.int64), float(new_after), int(now),
                              np.ascontiguousarray(seen, dtype=np.int64), float(w_similar), float(w_popular),
                              float(w_new), int(k))


def rank_candidates_numpy(items: np.ndarray, weights: np.ndarray, neigh_idx: np.ndarray, neigh_sim: np.ndarray,
                          n_items: int, pop_norm: np.ndarray, trending: np.ndarray, cats: np.ndarray,
                          affinity: np.ndarray, published: np.ndarray, *, now: int, new_after: float,
                          seen: np.ndarray, w_similar: float, w_popular: float, w_new: float,
                          k: int) -> np.ndarray:
    """Reference implementation of :func:`rank_candidates`: one array expression per score part
    (as the ranker was first written), the ``k`` best by one ``np.lexsort``."""
    items = np.asarray(items, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    total_w = float(weights.sum()) or 1.0
    if items.size:
        cf, reason = score_candidates_numpy(items, weights, neigh_idx, neigh_sim, n_items)
    else:
        cf, reason = np.zeros(n_items), np.full(n_items, -1)
    cats = np.asarray(cats[:n_items])
    published = np.asarray(published[:n_items])
    cat_aff = np.where(cats >= 0, np.asarray(affinity)[cats], 0.0)
    similar = w_similar * (cf / total_w)
    popular = w_popular * cat_aff * pop_norm
    is_new = (published > new_after) & (published <= now)
    new = w_new * is_new * np.maximum(cat_aff, 0.2) if is_new.any() else np.zeros(n_items)
    total = similar + popular + new + trending if is_new.any() else similar + popular + trending
    blocked = published > now
    blocked[np.asarray(seen, dtype=np.int64)] = True
    total = np.where(blocked, -np.inf, total)
    top = np.lexsort((np.arange(n_items), -total))[: min(k, n_items)]
    return np.column_stack([top, total[top], similar[top], popular[top], new[top], trending[top],
                            reason[top]]).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# the ranking of many users in one call


@njit(cache=True, nogil=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """NumPy's sum of ``a[lo:lo + n]`` for ``n <= 128``: one loop below 8, else 8 accumulators."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    end = n - (n % 8)
    while i < end:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """``a[lo:lo + n].sum()`` with the additions in NumPy's order (blocks of at most 128 summed
    by :func:`_block_sum`, halves split at a multiple of 8 and added), so the total is the one
    ``np.sum`` gives to the last bit. Not recursive: Numba's cache does not keep recursive
    functions safely."""
    if n <= 128:
        return _block_sum(a, lo, n)
    # the split tree walked in post-order on explicit stacks (depth <= 64 for any array)
    s_lo = np.empty(128, dtype=np.int64)
    s_n = np.empty(128, dtype=np.int64)
    s_done = np.zeros(128, dtype=np.bool_)
    vals = np.empty(128, dtype=np.float64)
    s_lo[0], s_n[0] = lo, n
    top, nv = 1, 0
    while top > 0:
        top -= 1
        x_lo, x_n, done = s_lo[top], s_n[top], s_done[top]
        if x_n <= 128:
            vals[nv] = _block_sum(a, x_lo, x_n)
            nv += 1
        elif done:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
        else:
            half = x_n // 2
            half -= half % 8
            s_lo[top], s_n[top], s_done[top] = x_lo, x_n, True
            s_lo[top + 1], s_n[top + 1], s_done[top + 1] = x_lo + half, x_n - half, False
            s_lo[top + 2], s_n[top + 2], s_done[top + 2] = x_lo, half, False
            top += 3
    return vals[0]


@njit(cache=True, nogil=True, error_model="numpy")
def _rank_users(u_off: np.ndarray, c_idx: np.ndarray, c_ts: np.ndarray, c_prog: np.ndarray,
                c_bought: np.ndarray, s_off: np.ndarray, s_idx: np.ndarray, nows: np.ndarray,
                pop_rows: np.ndarray, pop_norm: np.ndarray, trending: np.ndarray, neigh_idx: np.ndarray,
                neigh_sim: np.ndarray, n_items: int, cats: np.ndarray, n_cats: int, published: np.ndarray,
                max_history: int, half_life_ms: float, completion: float, level_weights: np.ndarray,
                new_ms: float, w_similar: float, w_popular: float, w_new: float, k: int, n: int,
                per_category: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    users = nows.shape[0]
    out = np.zeros((users, n, 8), dtype=np.float64)
    n_out = np.zeros(users, dtype=np.int64)
    r_items = np.full((users, max_history), -1, dtype=np.int64)
    r_levels = np.zeros((users, max_history), dtype=np.int64)
    n_recent = np.zeros(users, dtype=np.int64)
    cats_n = cats[:n_items]
    published_n = published[:n_items]
    items = np.empty(max_history, dtype=np.int64)
    weights = np.empty(max_history, dtype=np.float64)
    affinity = np.zeros(n_cats + 1, dtype=np.float64)
    per_cat = np.zeros(n_cats + 1, dtype=np.int64)
    for u in range(users):
        lo = u_off[u]
        hi = u_off[u + 1]
        now = nows[u]
        # the user's most recently touched courses, newest first, ties in the state's order
        order = np.argsort(-c_ts[lo:hi], kind="mergesort")
        m = 0
        for j in range(min(hi - lo, max_history)):
            e = lo + order[j]
            i = c_idx[e]
            if i < 0:  # not in the index (no neighbour list yet)
                continue
            level = 3 if c_bought[e] else 2 if c_prog[e] >= completion else 1
            age = now - c_ts[e]
            items[m] = i
            weights[m] = level_weights[level] * 2.0 ** (-(age if age > 0 else 0) / half_life_ms)
            r_items[u, m] = i
            r_levels[u, m] = level
            m += 1
        n_recent[u] = m
        # category affinity, the largest scaled to 1 (courses of no category count for nothing)
        affinity[:] = 0.0
        for a in range(m):
            c = cats_n[items[a]]
            affinity[c if c >= 0 else n_cats] += weights[a]
        affinity[n_cats] = 0.0
        top_aff = affinity.max()
        if top_aff > 0:
            for c in range(n_cats + 1):
                affinity[c] = affinity[c] / top_aff
        total_w = _pairwise_sum(weights, 0, m)
        if total_w == 0.0:
            total_w = 1.0
        row = pop_rows[u]
        top = _rank_candidates(items[:m], weights[:m], total_w, neigh_idx, neigh_sim, n_items, pop_norm[row],
                               trending[row], cats_n, affinity, published_n, float(now) - new_ms, now,
                               s_idx[s_off[u]:s_off[u + 1]], w_similar, w_popular, w_new, k)
        # at most per_category of one category (no category: no limit), nothing scored <= 0
        per_cat[:] = 0
        got = 0
        for r in range(top.shape[0]):
            t = top[r, 1]
            if not (t > 0.0 and t < np.inf):
                break
            c = cats_n[int(top[r, 0])]
            if c >= 0:
                if per_cat[c] >= per_category:
                    continue
                per_cat[c] += 1
            out[u, got, :7] = top[r]
            # the part that contributed most (the reason): the largest, ties to the later part
            # as Python's max((similar, 0), (new, 1), (popular, 2), (trending, 3)) picks it
            best, best_v = 0, top[r, 2]
            if top[r, 4] >= best_v:
                best, best_v = 1, top[r, 4]
            if top[r, 3] >= best_v:
                best, best_v = 2, top[r, 3]
            if top[r, 5] >= best_v:
                best = 3
            out[u, got, 7] = best
            got += 1
            if got == n:
                break
        n_out[u] = got
    return out, n_out, r_items, r_levels, n_recent


def rank_users(u_off: np.ndarray, c_idx: np.ndarray, c_ts: np.ndarray, c_prog: np.ndarray, c_bought: np.ndarray,
               s_off: np.ndarray, s_idx: np.ndarray, nows: np.ndarray, pop_rows: np.ndarray, pop_norm: np.ndarray,
               trending: np.ndarray, neigh_idx: np.ndarray, neigh_sim: np.ndarray, n_items: int, cats: np.ndarray,
               n_cats: int, published: np.ndarray, *, max_history: int, half_life_ms: float, completion: float,
               level_weights: np.ndarray, new_ms: float, w_similar: float, w_popular: float, w_new: float,
               k: int, n: int, per_category: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The hybrid ranking of many users in one call (``Ranker.recommend_many``).

    User ``u``'s courses are entries ``u_off[u]:u_off[u + 1]`` of ``c_idx`` (the course's index
    row, ``-1`` when it has none), ``c_ts`` (last touched), ``c_prog`` (progress) and
    ``c_bought``; the courses never to recommend to them are ``s_idx[s_off[u]:s_off[u + 1]]``;
    ranked at ``nows[u]`` with popularity row ``pop_rows[u]`` of ``pop_norm`` / ``trending``.
    Per user: the ``max_history`` most recently touched courses (ties in entry order) weighted by
    engagement level and recency, the category affinity, then :func:`rank_candidates` (its ``k``
    best) and the first ``n`` of them with at most ``per_category`` of one category and a total
    above 0. Returns ``(rows (U, n, 8), n_rows (U,), recent items (U, max_history), their levels,
    n_recent (U,))``; a row is ``rank_candidates``'s (its reason source indexing the user's recent
    items) and the part that contributed most: 0 similar, 1 new, 2 popular, 3 trending.
    """
    if max_history < 1 or n < 1 or per_category < 1 or k < n:
        msg = f"max_history, n and per_category must be >= 1 and k >= n, got {max_history}, {n}, {per_category}, {k}"
        raise ValueError(msg)
    i64, f64 = np.int64, np.float64
    return _rank_users(
        np.ascontiguousarray(u_off, dtype=i64), np.ascontiguousarray(c_idx, dtype=i64),
        np.ascontiguousarray(c_ts, dtype=i64), np.ascontiguousarray(c_prog, dtype=f64),
        np.ascontiguousarray(c_bought, dtype=np.bool_), np.ascontiguousarray(s_off, dtype=i64),
        np.ascontiguousarray(s_idx, dtype=i64), np.ascontiguousarray(nows, dtype=i64),
        np.ascontiguousarray(pop_rows, dtype=i64), np.ascontiguousarray(pop_norm, dtype=f64),
        np.ascontiguousarray(trending, dtype=f64), neigh_idx, neigh_sim, int(n_items),
        np.ascontiguousarray(cats, dtype=i64), int(n_cats), np.ascontiguousarray(published, dtype=i64),
        int(max_history), float(half_life_ms), float(completion), np.ascontiguousarray(level_weights, dtype=f64),
        float(new_ms), float(w_similar), float(w_popular), float(w_new), int(k), int(n), int(per_category))


def rank_users_numpy(u_off: np.ndarray, c_idx: np.ndarray, c_ts: np.ndarray, c_prog: np.ndarray,
                     c_bought: np.ndarray, s_off: np.ndarray, s_idx: np.ndarray, nows: np.ndarray,
                     pop_rows: np.ndarray, pop_norm: np.ndarray, trending: np.ndarray, neigh_idx: np.ndarray,
                     neigh_sim: np.ndarray, n_items: int, cats: np.ndarray, n_cats: int, published: np.ndarray, *,
                     max_history: int, half_life_ms: float, completion: float, level_weights: np.ndarray,
                     new_ms: float, w_similar: float, w_popular: float, w_new: float, k: int, n: int,
                     per_category: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference implementation of :func:`rank_users`: array expressions per user and
    :func:`rank_candidates_numpy`."""
    users = len(nows)
    out = np.zeros((users, n, 8))
    n_out = np.zeros(users, dtype=np.int64)
    r_items = np.full((users, max_history), -1, dtype=np.int64)
    r_levels = np.zeros((users, max_history), dtype=np.int64)
    n_recent = np.zeros(users, dtype=np.int64)
    cats = np.asarray(cats[:n_items], dtype=np.int64)
    for u in range(users):
        lo, hi, now = int(u_off[u]), int(u_off[u + 1]), int(nows[u])
        recent = lo + np.argsort(-np.asarray(c_ts[lo:hi]), kind="stable")[:max_history]
        recent = recent[np.asarray(c_idx)[recent] >= 0]
        items = np.asarray(c_idx)[recent].astype(np.int64)
        levels = np.where(np.asarray(c_bought)[recent], 3, np.where(np.asarray(c_prog)[recent] >= completion, 2, 1))
        ages = np.maximum(now - np.asarray(c_ts)[recent], 0)
        weights = np.asarray(level_weights)[levels] * 2.0 ** (-ages / half_life_ms)
        m = len(items)
        r_items[u, :m], r_levels[u, :m], n_recent[u] = items, levels, m
        affinity = np.zeros(n_cats + 1)
        np.add.at(affinity, np.where(cats[items] >= 0, cats[items], n_cats), weights)
        affinity[n_cats] = 0.0
        if affinity.max() > 0:
            affinity = affinity / affinity.max()
        top = rank_candidates_numpy(items, weights, neigh_idx, neigh_sim, n_items, pop_norm[pop_rows[u]],
                                    trending[pop_rows[u]], cats, affinity, published, now=now,
                                    new_after=now - new_ms, seen=np.asarray(s_idx[s_off[u]:s_off[u + 1]]),
                                    w_similar=w_similar, w_popular=w_popular, w_new=w_new, k=k)
        ok = (top[:, 1] > 0) & np.isfinite(top[:, 1])
        top = top[: int(np.argmin(ok)) if not ok.all() else len(top)]  # up to the first total <= 0
        taken = np.zeros(n_cats + 1, dtype=np.int64)
        got = 0
        for row in top:
            c = cats[int(row[0])]
            if c >= 0:
                if taken[c] >= per_category:
                    continue
                taken[c] += 1
            parts = [row[2], row[4], row[3], row[5]]  # similar, new, popular, trending: ties to the later
            out[u, got, :7] = row
            out[u, got, 7] = 3 - int(np.argmax(parts[::-1]))
            got += 1
            if got == n:
                break
        n_out[u] = got
    return out, n_out, r_items, r_levels, n_recent


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


@njit(cache=True, nogil=True)
def _pair_increments_batch(old_w: np.ndarray, new_w: np.ndarray, offsets: np.ndarray,
                           other_w: np.ndarray) -> np.ndarray:
    rises = old_w.shape[0]
    if new_w.shape[0] != rises or offsets.shape[0] != rises + 1 or offsets[0] != 0 or offsets[rises] != other_w.shape[0]:
        msg = "offsets must run from 0 to len(other_w), one segment per rise"
        raise ValueError(msg)
    out = np.empty(other_w.shape[0], dtype=np.float64)
    for r in range(rises):
        a = old_w[r]
        b = new_w[r]
        if b < a:
            msg = "engagement only rises"
            raise ValueError(msg)
        lo = offsets[r]
        hi = offsets[r + 1]
        if hi < lo:
            msg = "offsets must not decrease"
            raise ValueError(msg)
        for i in range(lo, hi):
            o = other_w[i]
            out[i] = min(b, o) - min(a, o)
    return out


def pair_increments_batch(old_w: np.ndarray, new_w: np.ndarray, offsets: np.ndarray, other_w: np.ndarray) -> np.ndarray:
    """:func:`pair_increments` of many rises at once (one call per batch of events).

    Rise ``r`` goes from ``old_w[r]`` to ``new_w[r]`` against ``other_w[offsets[r]:offsets[r + 1]]``;
    returns the gains in the layout of ``other_w``.
    """
    return _pair_increments_batch(np.ascontiguousarray(old_w, dtype=np.float64),
                                  np.ascontiguousarray(new_w, dtype=np.float64),
                                  np.ascontiguousarray(offsets, dtype=np.int64),
                                  np.ascontiguousarray(other_w, dtype=np.float64))


def pair_increments_batch_numpy(old_w: np.ndarray, new_w: np.ndarray, offsets: np.ndarray,
                                other_w: np.ndarray) -> np.ndarray:
    """Reference implementation of :func:`pair_increments_batch` in plain NumPy (no loop over rises)."""
    counts = np.diff(np.asarray(offsets, dtype=np.int64))
    other_w = np.asarray(other_w, dtype=np.float64)
    return (np.minimum(np.repeat(np.asarray(new_w, dtype=np.float64), counts), other_w)
            - np.minimum(np.repeat(np.asarray(old_w, dtype=np.float64), counts), other_w))


# ---------------------------------------------------------------------------------------------
# co-occurrence gains of a whole batch, merged per course (one call per ingest batch)


@njit(cache=True, nogil=True, error_model="numpy")
def _cooc_gains_batch(course: np.ndarray, ts: np.ndarray, old_w: np.ndarray, new_w: np.ndarray, offsets: np.ndarray,
                      others: np.ndarray, other_w: np.ndarray, half_life_ms: float, n_courses: int,
                      ) -> tuple[np.ndarray, np.ndarray]:
    rises = course.shape[0]
    n_o = others.shape[0]
    if (ts.shape[0] != rises or old_w.shape[0] != rises or new_w.shape[0] != rises
            or offsets.shape[0] != rises + 1 or offsets[0] != 0 or offsets[rises] != n_o
            or other_w.shape[0] != n_o):
        msg = "offsets must run from 0 to len(others) == len(other_w), one segment per rise"
        raise ValueError(msg)
    if not half_life_ms > 0.0:
        msg = "half_life_ms must be > 0"
        raise ValueError(msg)
    gains = np.empty(n_o, dtype=np.float64)
    work = np.empty(6 * n_courses, dtype=np.int64)  # one allocation for the per-course arrays
    slot = work[:n_courses]  # course -> its place in order of first appearance (-1: not yet)
    touched = work[n_courses:2 * n_courses]
    latest = work[2 * n_courses:3 * n_courses]
    n_raw = work[3 * n_courses:4 * n_courses]  # pair entries per course row, before merging
    stamp = work[4 * n_courses:5 * n_courses]
    at = work[5 * n_courses:]
    slot[:] = -1
    n_raw[:] = 0
    stamp[:] = -1
    n_slots = 0
    n_kept = 0
    # pass 1: validate, gains, courses in order of first appearance, their latest ts, row sizes
    for r in range(rises):
        c = course[r]
        t = ts[r]
        a = old_w[r]
        b = new_w[r]
        lo = offsets[r]
        hi = offsets[r + 1]
        if c < 0 or c >= n_courses:
            msg = "course index out of range"
            raise ValueError(msg)
        if b < a:
            msg = "engagement only rises"
            raise ValueError(msg)
        if hi < lo:
            msg = "offsets must not decrease"
            raise ValueError(msg)
        if slot[c] < 0:
            slot[c] = n_slots
            touched[n_slots] = c
            n_slots += 1
            latest[c] = t
        elif t > latest[c]:
            latest[c] = t
        kept = 0
        for i in range(lo, hi):
            w = other_w[i]
            g = min(b, w) - min(a, w)
            gains[i] = g
            if g > 0.0:
                o = others[i]
                if o < 0 or o >= n_courses or o == c:
                    msg = "other course index out of range, or the rise's own course"
                    raise ValueError(msg)
                if slot[o] < 0:
                    slot[o] = n_slots
                    touched[n_slots] = o
                    n_slots += 1
                    latest[o] = t
                elif t > latest[o]:
                    latest[o] = t
                n_raw[o] += 1
                kept += 1
        n_raw[c] += kept
        n_kept += kept
    # the output, packed: ints = [n_slots, courses, ts, indptr, pair courses], floats = [pop, pair gains];
    # pass 2 writes every gain, re-based to its row's latest ts, into the pair part, rows (by slot) in
    # sequence order; pass 3 merges each row's entries per other course in place
    n_s = n_slots
    base_i = 3 * n_s + 2
    ints = np.empty(base_i + 2 * n_kept, dtype=np.int64)
    floats = np.empty(n_s + 2 * n_kept, dtype=np.float64)
    ints[0] = n_s
    fill = ints[2 * n_s + 1:3 * n_s + 2]  # row starts of the raw entries, then the output's indptr
    p = base_i
    for s in range(n_s):
        c = touched[s]
        ints[1 + s] = c
        ints[1 + n_s + s] = latest[c]
        fill[s] = p
        p += n_raw[c]
        floats[s] = 0.0
    for r in range(rises):
        c = course[r]
        t = ts[r]
        sc = slot[c]
        lc = latest[c]
        f = 1.0 if t == lc else np.exp2((t - lc) / half_life_ms)
        floats[sc] += (new_w[r] - old_w[r]) * f
        for i in range(offsets[r], offsets[r + 1]):
            g = gains[i]
            if g > 0.0:
                o = others[i]
                q = fill[sc]
                ints[q] = o
                floats[q - base_i + n_s] = g * f
                fill[sc] = q + 1
                so = slot[o]
                lo_ = latest[o]
                q = fill[so]
                ints[q] = c
                floats[q - base_i + n_s] = g if t == lo_ else g * np.exp2((t - lo_) / half_life_ms)
                fill[so] = q + 1
    w = base_i  # fill[s] is now row s's end = row s + 1's start
    start = base_i
    for s in range(n_s):
        end = fill[s]
        fill[s] = w - base_i
        for q in range(start, end):
            o = ints[q]
            g = floats[q - base_i + n_s]
            if stamp[o] == s:
                floats[at[o]] += g
            else:
                stamp[o] = s
                at[o] = w - base_i + n_s
                ints[w] = o
                floats[w - base_i + n_s] = g
                w += 1
        start = end
    fill[n_s] = w - base_i
    return ints[:w], floats[:n_s + w - base_i]


def _gains_args(course: np.ndarray, ts: np.ndarray, old_w: np.ndarray, new_w: np.ndarray, offsets: np.ndarray,
                others: np.ndarray, other_w: np.ndarray) -> tuple[np.ndarray, ...]:
    i8, f8 = np.int64, np.float64  # asarray: no copy of arrays that already fit (any layout compiles)
    return (np.asarray(course, dtype=i8), np.asarray(ts, dtype=i8), np.asarray(old_w, dtype=f8),
            np.asarray(new_w, dtype=f8), np.asarray(offsets, dtype=i8), np.asarray(others, dtype=i8),
            np.asarray(other_w, dtype=f8))


def _unpack_gains(ints: np.ndarray, floats: np.ndarray) -> tuple[np.ndarray, ...]:
    """The 6 outputs of :func:`cooc_gains_batch` as views of the kernel's 2 packed buffers (returning
    2 arrays from a jitted function instead of 6 saves about 2 µs of boxing per call)."""
    s = int(ints[0])
    return ints[1:1 + s], ints[1 + s:1 + 2 * s], floats[:s], ints[1 + 2 * s:2 + 3 * s], ints[2 + 3 * s:], floats[s:]


def cooc_gains_batch(course: np.ndarray, ts: np.ndarray, old_w: np.ndarray, new_w: np.ndarray,
                     offsets: np.ndarray, others: np.ndarray, other_w: np.ndarray, half_life_ms: float,
                     n_courses: int | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The co-occurrence gains of a batch of engagement rises, merged per course: one call per batch.

    Rise ``r``: the user's engagement with course ``course[r]`` rose from ``old_w[r]`` to ``new_w[r]``
    at ``ts[r]``, against the user's other courses ``others[offsets[r]:offsets[r + 1]]`` (weights
    ``other_w[...]``; distinct indices other than ``course[r]``; all indices < ``n_courses``). A pair
    gains ``min(new_w, o) - min(old_w, o)`` (:func:`pair_increments`) and counts only when > 0; it
    goes to the risen course's row and, symmetrically, to the other course's row.

    Returns ``(courses, ts, pop_delta, indptr, pair_course, pair_gain)``: one entry per touched
    course (the risen ones and the others that gained), in order of first appearance (a rise's
    course, then its others that gained, rise after rise); ``ts[s]`` is the course's latest ts in
    the batch and every gain of its row is re-based to it (times ``2 ** ((t - ts[s]) / half_life_ms)``);
    ``pop_delta[s]`` sums its rises' ``new_w - old_w`` (0 for a course that only gained pairs); its
    pairs are ``pair_course/pair_gain[indptr[s]:indptr[s + 1]]``, one per other course, in order
    of first appearance, each the re-based sum in rise order. That is the content of the per-rise
    :class:`models.recommend.RowUpdate` s merged per course, as the ingest agent used to do in Python.
    """
    args = _gains_args(course, ts, old_w, new_w, offsets, others, other_w)
    if n_courses is None:
        n_courses = int(max(args[0].max(initial=-1), args[5].max(initial=-1))) + 1
    return _unpack_gains(*_cooc_gains_batch(*args, float(half_life_ms), int(n_courses)))


def cooc_gains_batch_numpy(course: np.ndarray, ts: np.ndarray, old_w: np.ndarray, new_w: np.ndarray,
                           offsets: np.ndarray, others: np.ndarray, other_w: np.ndarray, half_life_ms: float,
                           n_courses: int | None = None,
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference implementation of :func:`cooc_gains_batch`, vectorised the NumPy way (no loop over rises).

    Gains by ``np.repeat``/``np.minimum``; the order of first appearance by ``np.unique``; latest
    ts by ``np.maximum.at``; re-basing by ``np.exp2``; popularity by ``np.bincount``; pairs merged
    with one ``np.lexsort`` (row, other course, sequence position) and ``np.add.reduceat``, then
    put in order of first appearance with a second ``np.lexsort``.
    """
    course, ts, old_w, new_w, offsets, others, other_w = _gains_args(course, ts, old_w, new_w, offsets, others,
                                                                     other_w)
    if n_courses is None:
        n_courses = int(max(course.max(initial=-1), others.max(initial=-1))) + 1
    rises = course.size
    rise_of = np.repeat(np.arange(rises), np.diff(offsets))
    gains = np.minimum(new_w[rise_of], other_w) - np.minimum(old_w[rise_of], other_w)
    kept = np.flatnonzero(gains > 0.0)
    kr, ko, kg = rise_of[kept], others[kept], gains[kept]
    kc, kt = course[kr], ts[kr]
    # the per-rise updates in sequence: rise r's own at offsets[r] + r, its pair with entry i at i + r + 1
    seq_own = offsets[:-1] + np.arange(rises)
    seq_pair = kept + kr + 1
    who = np.concatenate([course, ko])
    seq = np.concatenate([seq_own, seq_pair])
    distinct, first = np.unique(who[np.argsort(seq, kind="stable")], return_index=True)
    courses = distinct[np.argsort(first)]
    slot = np.full(n_courses, -1, dtype=np.int64)
    slot[courses] = np.arange(courses.size)
    latest = np.full(n_courses, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, who, np.concatenate([ts, kt]))
    pop = np.bincount(slot[course], weights=(new_w - old_w) * np.exp2((ts - latest[course]) / half_life_ms),
                      minlength=courses.size).astype(np.float64)
    row = np.concatenate([kc, ko])
    other = np.concatenate([ko, kc])
    gain = np.concatenate([kg * np.exp2((kt - latest[kc]) / half_life_ms),
                           kg * np.exp2((kt - latest[ko]) / half_life_ms)])
    key = np.concatenate([seq_pair, seq_pair])
    order = np.lexsort((key, other, slot[row]))
    row_s, other_s = slot[row][order], other[order]
    if order.size:
        starts = np.flatnonzero(np.concatenate([[True], (row_s[1:] != row_s[:-1]) | (other_s[1:] != other_s[:-1])]))
        sums = np.add.reduceat(gain[order], starts)
    else:
        starts = np.zeros(0, dtype=np.int64)
        sums = np.zeros(0, dtype=np.float64)
    group_row = row_s[starts]
    by_first = np.lexsort((key[order][starts], group_row))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(group_row, minlength=courses.size))]).astype(np.int64)
    return (courses, latest[courses], pop, indptr, other_s[starts][by_first], sums[by_first])


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
    rank_candidates(np.zeros(1, dtype=np.int64), np.ones(1), np.full((1, 2), -1, dtype=np.int64), np.zeros((1, 2)), 1,
                    np.ones(1), np.zeros(1), np.zeros(1, dtype=np.int64), np.ones(2), np.zeros(1, dtype=np.int64),
                    now=1, new_after=0.0, seen=np.zeros(0, dtype=np.int64), w_similar=1.0, w_popular=0.1, w_new=0.1,
                    k=1)
    pair_increments(0.0, 1.0, np.ones(2))
    row_similarities_batch(np.array([0, 2, 2]), np.array([0, 1]), np.ones(2), np.ones(2), np.ones(2), k=2)
    pair_increments_batch(np.zeros(1), np.ones(1), np.array([0, 2]), np.ones(2))
    cooc_gains_batch(np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64), np.zeros(1), np.ones(1),
                     np.array([0, 2]), np.array([1, 2]), np.ones(2), 1.0, 3)
