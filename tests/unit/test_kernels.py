"""Numba kernels against their NumPy references; incremental co-occurrence equals batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.kernels import (
    cooc_gains_batch,
    cooc_gains_batch_numpy,
    pair_increments,
    pair_increments_batch,
    pair_increments_batch_numpy,
    pair_increments_numpy,
    row_similarities,
    row_similarities_batch,
    row_similarities_batch_numpy,
    row_similarities_numpy,
    score_candidates,
    score_candidates_numpy,
    top_k,
)
from models.profile import UserState
from models.recommend import (
    LEVEL_WEIGHTS,
    CooccurrenceRows,
    CoocRises,
    RowUpdate,
    cooc_updates,
    engagement_level,
    inflation,
    row_neighbours,
    rows_neighbours,
)
from schemas.events import Purchase, View

finite = st.floats(min_value=0, max_value=1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(finite, finite), min_size=0, max_size=60),
    st.floats(min_value=0.01, max_value=1e3),
    st.sampled_from(["cosine", "jaccard", "lift"]),
    st.integers(1, 25),
)
def test_row_similarities_match_numpy(pairs, self_pop, measure, k):
    co = np.array([p[0] for p in pairs])
    pop = np.array([p[1] for p in pairs])
    idx, sims = row_similarities(co, pop, self_pop, total=5e3, measure=measure, k=k)
    ref_idx, ref_sims = row_similarities_numpy(co, pop, self_pop, total=5e3, measure=measure, k=k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, ref_sims, rtol=1e-12)


@pytest.mark.parametrize("measure", ["cosine", "jaccard", "lift"])
@pytest.mark.parametrize(
    ("co", "pop", "k"),
    [
        ([1.0, 2.0, 2.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0], 3),  # ties: lower position first
        ([1.0, 2.0, 2.0], [1.0, 1.0, 1.0], 10),  # k > n
        ([0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 2.0], 4),  # zero co-occurrence is a similarity of 0
        ([0.0, 0.0], [0.0, 0.0], 2),  # no popularity: nothing
        ([], [], 5),  # empty row
        ([3.0, 1.0, 2.0], [1.0, 1.0, 1.0], 0),  # k = 0
        ([5.0] * 40, [2.0] * 40, 20),  # all equal: the first k positions
    ],
)
def test_row_similarities_edge_cases_match_numpy(co, pop, k, measure):
    co, pop = np.array(co, dtype=float), np.array(pop, dtype=float)
    idx, sims = row_similarities(co, pop, 2.0, total=10.0, measure=measure, k=k)
    ref_idx, ref_sims = row_similarities_numpy(co, pop, 2.0, total=10.0, measure=measure, k=k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(sims, ref_sims)


def _random_csr(rng: np.random.Generator, rows: int, n_pop: int, max_len: int, ties: bool):
    lengths = rng.integers(0, max_len + 1, rows) * (rng.random(rows) > 0.25)  # a quarter of rows empty
    lengths = np.minimum(lengths, n_pop)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cols = np.concatenate([np.zeros(0, dtype=np.int64), *(rng.permutation(n_pop)[:m] for m in lengths)])
    co = rng.choice([0.0, 0.5, 1.0, 2.0], cols.size) if ties else rng.exponential(1.0, cols.size)
    pop = rng.choice([0.0, 1.0, 3.0], n_pop) if ties else rng.exponential(3.0, n_pop) * (rng.random(n_pop) > 0.1)
    self_pop = rng.choice([0.0, 2.0, 5.0], rows) if ties else rng.exponential(3.0, rows)
    return indptr, cols.astype(np.int64), co, self_pop, pop


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 30), st.integers(1, 60), st.integers(0, 80), st.integers(0, 25),
       st.sampled_from(["cosine", "jaccard", "lift"]), st.booleans(), st.integers(0, 2**31 - 1))
def test_row_similarities_batch_matches_row_kernel_and_numpy(rows, n_pop, max_len, k, measure, ties, seed):
    indptr, cols, co, self_pop, pop = _random_csr(np.random.default_rng(seed), rows, n_pop, max_len, ties)
    idx, sims, counts = row_similarities_batch(indptr, cols, co, self_pop, pop, total=50.0, measure=measure, k=k)
    ref = row_similarities_batch_numpy(indptr, cols, co, self_pop, pop, total=50.0, measure=measure, k=k)
    np.testing.assert_array_equal(idx, ref[0])
    np.testing.assert_array_equal(sims, ref[1])
    np.testing.assert_array_equal(counts, ref[2])
    assert idx.shape == sims.shape == (rows, k)
    for r in range(rows):
        lo, hi = indptr[r], indptr[r + 1]
        one_idx, one_sims = row_similarities(co[lo:hi], pop[cols[lo:hi]], self_pop[r], total=50.0, measure=measure, k=k)
        assert counts[r] == one_idx.size
        np.testing.assert_array_equal(idx[r, : counts[r]], cols[lo:hi][one_idx])
        np.testing.assert_array_equal(sims[r, : counts[r]], one_sims)
        assert (idx[r, counts[r]:] == -1).all() and (sims[r, counts[r]:] == 0.0).all()


def test_row_similarities_batch_rejects_bad_arguments():
    ones = np.ones(2)
    with pytest.raises(ValueError, match="measure"):
        row_similarities_batch([0, 2], [0, 1], ones, [1.0], ones, measure="euclid")
    with pytest.raises(ValueError, match="indptr"):
        row_similarities_batch([0, 3], [0, 1], ones, [1.0], ones)
    with pytest.raises(ValueError, match="self_pop"):
        row_similarities_batch([0, 2], [0, 1], ones, [1.0, 1.0], ones)
    with pytest.raises(ValueError, match="column"):
        row_similarities_batch([0, 2], [0, 2], ones, [1.0], ones)
    idx, sims, counts = row_similarities_batch([0], [], [], [], [], k=3)  # no rows at all
    assert idx.shape == (0, 3) and counts.size == 0


def test_rows_neighbours_equal_row_neighbours_and_flag_unknown_popularity():
    hl = 30 * 86_400_000
    ts = 1_767_225_600_000
    s = inflation(ts, hl)
    entries = [
        {"pop": 4.0 * s, "row": {"a": 2.0 * s, "b": 1.0 * s, "c": 1.0 * s}, "ts": ts},
        {"pop": 0.0, "row": {}, "ts": ts},
        {"pop": 2.0 * s, "row": {"b": 1.0 * s, "x": 1.0 * s}, "ts": ts},  # x has no popularity yet
        {"pop": 3.0 * s, "row": {"c": 3.0 * s, "a": 1.0 * s}, "ts": ts},
    ]
    pops = {"a": 2.0, "b": 1.0, "c": 3.0, "x": 0.0}
    calls: list[str] = []

    def pop_of(c: str) -> float:
        calls.append(c)
        return pops[c]

    for measure in ("cosine", "jaccard", "lift"):
        calls.clear()
        lists, unknown = rows_neighbours(entries, pop_of, ts, hl, k=2, measure=measure, total=9.0)
        assert sorted(calls) == ["a", "b", "c", "x"]  # once per distinct course
        assert lists == [row_neighbours(e, pops.__getitem__, ts, hl, k=2, measure=measure, total=9.0) for e in entries]
        assert unknown.tolist() == [False, False, True, False]
    assert rows_neighbours([], pop_of, ts, hl)[0] == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.0, 3.0]), st.sampled_from([0.0, 1.0, 2.0, 3.0]),
                          st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0]), max_size=25)), max_size=30))
def test_pair_increments_batch_matches_single_and_numpy(rises):
    rises = [(min(a, b), max(a, b), o) for a, b, o in rises]
    old = np.array([r[0] for r in rises])
    new = np.array([r[1] for r in rises])
    offsets = np.cumsum([0, *(len(r[2]) for r in rises)])
    other = np.array([w for r in rises for w in r[2]])
    got = pair_increments_batch(old, new, offsets, other)
    np.testing.assert_array_equal(got, pair_increments_batch_numpy(old, new, offsets, other))
    for r, (a, b, o) in enumerate(rises):
        np.testing.assert_array_equal(got[offsets[r]:offsets[r + 1]], pair_increments(a, b, np.array(o)))


def test_pair_increments_batch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="offsets"):
        pair_increments_batch([0.0], [1.0], [0, 3], [1.0, 2.0])
    with pytest.raises(ValueError, match="rises"):
        pair_increments_batch([2.0], [1.0], [0, 1], [1.0])


def test_row_similarities_rejects_bad_arguments():
    with pytest.raises(ValueError, match="measure"):
        row_similarities(np.ones(2), np.ones(2), 1.0, measure="euclid")
    with pytest.raises(ValueError, match="same shape"):
        row_similarities(np.ones(2), np.ones(3), 1.0)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_score_candidates_match_numpy(n_items, k, seed):
    rng = np.random.default_rng(seed)
    neigh_idx = np.full((n_items, k), -1)
    for row in neigh_idx:  # distinct neighbours, -1 pads at the end, as NeighbourIndex keeps them
        m = rng.integers(0, min(k, n_items) + 1)
        row[:m] = rng.permutation(n_items)[:m]
    neigh_sim = rng.random((n_items, k))
    items = rng.choice(n_items, size=min(n_items, 6), replace=False)
    weights = rng.random(items.size)
    scores, best = score_candidates(items, weights, neigh_idx, neigh_sim, n_items)
    ref_scores, ref_best = score_candidates_numpy(items, weights, neigh_idx, neigh_sim, n_items)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-12)
    np.testing.assert_array_equal(best, ref_best)


@settings(max_examples=100, deadline=None)
@given(finite, finite, st.lists(finite, max_size=30))
def test_pair_increments_match_numpy(a, b, others):
    old, new = sorted((a, b))
    np.testing.assert_allclose(pair_increments(old, new, np.array(others)), pair_increments_numpy(old, new, np.array(others)))


def test_top_k_orders_best_first_with_ties_by_index():
    np.testing.assert_array_equal(top_k(np.array([1.0, 3.0, 3.0, 0.5, 2.0]), 3), [1, 2, 4])
    assert top_k(np.array([]), 3).size == 0


def _batch_cooccurrence(histories: dict[str, dict[str, int]]) -> tuple[dict, dict]:
    """Min-weight co-occurrence of every pair and popularity, from complete histories at once."""
    co: dict[tuple[str, str], float] = {}
    pop: dict[str, float] = {}
    for levels in histories.values():
        for c, lv in levels.items():
            pop[c] = pop.get(c, 0.0) + LEVEL_WEIGHTS[lv]
        for a, b in itertools.permutations(levels, 2):
            co[(a, b)] = co.get((a, b), 0.0) + min(LEVEL_WEIGHTS[levels[a]], LEVEL_WEIGHTS[levels[b]])
    return co, pop


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=60))
def test_incremental_cooccurrence_equals_batch_after_every_event(steps):
    """Streaming result == batch result after each update (River's stats-test pattern)."""
    ts = 1_767_225_600_000
    states: dict[str, UserState] = {}
    rows = CooccurrenceRows(half_life_days=1e9)  # no decay within the run: compare plain sums
    batched = CooccurrenceRows(half_life_days=1e9)
    batch = CoocRises(max_history=100)
    scale = inflation(ts, 1e9 * 86_400_000)
    for n, (u, c, action) in enumerate(steps):
        uid, cid = f"u{u}", f"c{c}"
        state = states.setdefault(uid, UserState(uid))
        old = engagement_level(state.courses.get(cid))
        if action == 3:
            event = Purchase(event_id=f"e{n}", user_id=uid, ts=ts + n, schema_version=1, amount=1.0,
                             currency="CNY", order_id=f"o{n}", course_id=cid)
        else:
            event = View(event_id=f"e{n}", user_id=uid, ts=ts + n, schema_version=1, course_id=cid,
                         lesson_id="l", watch_seconds=1.0, progress=(0.2, 0.5, 0.95)[action])
        state.apply(event)
        new = engagement_level(state.courses.get(cid))
        for update in cooc_updates(state, cid, old, new, ts + n, max_history=100):
            rows.apply(update)
        batch.add(state, cid, old, new, ts + n)
        if n % 5 == 4 or n == len(steps) - 1:  # the ingest path: a batch's rises merged by the fused kernel
            for update in batch.merged_updates(1e9 * 86_400_000):
                batched.apply(update)
            batch = CoocRises(max_history=100)
        histories = {s.user_id: {c: engagement_level(e) for c, e in s.courses.items()} for s in states.values()}
        co, pop = _batch_cooccurrence(histories)
        got_co = {(a, b): v / scale for a, row in rows.rows.items() for b, v in row.items() if v}
        assert got_co == pytest.approx({k: v for k, v in co.items() if v})
        assert {c: v / scale for c, v in rows.pop.items() if v} == pytest.approx({c: v for c, v in pop.items() if v})
        if n % 5 == 4 or n == len(steps) - 1:
            assert {(a, b): v / scale for a, row in batched.rows.items() for b, v in row.items() if v} == \
                pytest.approx({k: v for k, v in co.items() if v})
            assert {c: v / scale for c, v in batched.pop.items() if v} == \
                pytest.approx({c: v for c, v in pop.items() if v})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=60))
def test_cooc_rises_of_a_batch_equal_per_event_updates(steps):
    """The ingest agent's batch path (CoocRises, one kernel call) == cooc_updates per event."""
    ts = 1_767_225_600_000
    states: dict[str, UserState] = {}
    rises = CoocRises(max_history=3)
    expected = []
    for n, (u, c, action) in enumerate(steps):
        uid, cid = f"u{u}", f"c{c}"
        state = states.setdefault(uid, UserState(uid))
        old = engagement_level(state.courses.get(cid))
        state.apply(View(event_id=f"e{n}", user_id=uid, ts=ts + n, schema_version=1, course_id=cid,
                         lesson_id="l", watch_seconds=1.0, progress=(0.2, 0.5, 0.95, 0.95)[action]))
        if action == 3:
            state.apply(Purchase(event_id=f"p{n}", user_id=uid, ts=ts + n, schema_version=1, amount=1.0,
                                 currency="CNY", order_id=f"o{n}", course_id=cid))
        new = engagement_level(state.courses.get(cid))
        expected.extend(cooc_updates(state, cid, old, new, ts + n, max_history=3))
        rises.add(state, cid, old, new, ts + n)
    assert rises.updates() == expected


# ---------------------------------------------------------------------------------------------
# the fused co-occurrence kernel of an ingest batch

HL_MS = 30 * 86_400_000


def _merge_per_course(updates: list[RowUpdate], half_life_ms: float) -> list[RowUpdate]:
    """The merge the ingest agent did in Python before the fused kernel (``_Gains``), as it was:
    per course in order of first appearance, earlier sums re-based whenever a later ts arrives."""
    merged: dict[str, list] = {}  # course -> [ts, pop, pairs]
    for u in updates:
        g = merged.setdefault(u.course_id, [0, 0.0, {}])
        if u.ts > g[0]:
            factor = 2.0 ** ((g[0] - u.ts) / half_life_ms) if g[0] else 1.0
            g[1] *= factor
            for k in g[2]:
                g[2][k] *= factor
            g[0] = u.ts
        factor = 2.0 ** ((u.ts - g[0]) / half_life_ms)
        g[1] += u.pop_delta * factor
        for other, gain in u.pairs:
            g[2][other] = g[2].get(other, 0.0) + gain * factor
    return [RowUpdate(c, ts, pop, tuple(pairs.items())) for c, (ts, pop, pairs) in merged.items()]


def _assert_same_updates(got: list[RowUpdate], expected: list[RowUpdate]) -> None:
    """Same courses, ts and pairs in the same order; values equal up to 1e-12 relative."""
    assert [(u.course_id, u.ts, [o for o, _ in u.pairs]) for u in got] == \
        [(u.course_id, u.ts, [o for o, _ in u.pairs]) for u in expected]
    for u, e in zip(got, expected, strict=True):
        assert u.pop_delta == pytest.approx(e.pop_delta, rel=1e-12, abs=0.0)
        assert [g for _, g in u.pairs] == pytest.approx([g for _, g in e.pairs], rel=1e-12, abs=0.0)


def _random_rises(rng: np.random.Generator, rises: int, n_courses: int, max_others: int, ts_spread: int):
    """Kernel inputs: repeated courses, out-of-order ts, rises without others, a course both risen and other."""
    course = rng.integers(0, n_courses, rises)
    ts = 1_767_225_600_000 + rng.integers(-ts_spread, ts_spread + 1, rises)
    levels = np.sort(rng.choice(4, size=(rises, 2), replace=True), axis=1)
    levels[:, 1] = np.maximum(levels[:, 1], levels[:, 0] + 1).clip(max=3)
    levels[:, 0] = np.minimum(levels[:, 0], levels[:, 1] - 1)
    old_w = np.array(LEVEL_WEIGHTS)[levels[:, 0]]
    new_w = np.array(LEVEL_WEIGHTS)[levels[:, 1]]
    others, other_w, offsets = [], [], [0]
    for c in course:
        pool = np.delete(np.arange(n_courses), c)
        m = rng.integers(0, min(max_others, pool.size) + 1) * (rng.random() > 0.2)
        others.extend(rng.permutation(pool)[:m])
        other_w.extend(rng.choice(LEVEL_WEIGHTS[1:], size=m))
        offsets.append(len(others))
    return (course, ts, old_w, new_w, np.array(offsets), np.array(others, dtype=np.int64), np.array(other_w))


def _as_updates(out, names: list[str]) -> list[RowUpdate]:
    courses, ts, pop, indptr, other, gain = out
    return [RowUpdate(names[c], int(ts[s]), float(pop[s]),
                      tuple((names[o], float(g)) for o, g in zip(other[indptr[s]:indptr[s + 1]],
                                                                 gain[indptr[s]:indptr[s + 1]], strict=True)))
            for s, c in enumerate(courses)]


def _per_rise_updates(inputs, names: list[str]) -> list[RowUpdate]:
    course, ts, old_w, new_w, offsets, others, other_w = inputs
    gains = pair_increments_batch(old_w, new_w, offsets, other_w)
    out = []
    for r in range(course.size):
        lo, hi = offsets[r], offsets[r + 1]
        pairs = tuple((names[o], float(g)) for o, g in zip(others[lo:hi], gains[lo:hi], strict=True) if g > 0)
        out.append(RowUpdate(names[course[r]], int(ts[r]), float(new_w[r] - old_w[r]), pairs))
        out.extend(RowUpdate(o, int(ts[r]), 0.0, ((names[course[r]], g),)) for o, g in pairs)
    return out


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 60), st.integers(2, 25), st.integers(0, 20), st.sampled_from([0, 5, 86_400_000 * 40]),
       st.integers(0, 2**31 - 1))
def test_cooc_gains_batch_matches_numpy_and_the_per_rise_merge(rises, n_courses, max_others, ts_spread, seed):
    inputs = _random_rises(np.random.default_rng(seed), rises, n_courses, max_others, ts_spread)
    got = cooc_gains_batch(*inputs, HL_MS, n_courses)
    ref = cooc_gains_batch_numpy(*inputs, HL_MS, n_courses)
    for a, b in zip(got, ref, strict=True):
        assert a.dtype == b.dtype
        if a.dtype == np.int64:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0.0)
    names = [f"c{i}" for i in range(n_courses)]
    _assert_same_updates(_as_updates(got, names), _merge_per_course(_per_rise_updates(inputs, names), HL_MS))
    assert (got[4] != np.repeat(got[0], np.diff(got[3]))).all()  # never a pair with itself
    assert (got[5] > 0).all()


def test_cooc_gains_batch_edge_cases():
    empty = cooc_gains_batch([], [], [], [], [0], [], [], HL_MS)
    assert all(a.size == 0 for a in (*empty[:3], *empty[4:])) and empty[3].tolist() == [0]
    ts0 = 1_767_225_600_000
    # course 0 rises twice (the later one first), course 1 is risen once and an "other" twice;
    # every pair gains 1, the rises at T count half at the courses' latest ts T + one half-life
    inputs = ([0, 1, 0], [ts0 + HL_MS, ts0, ts0], [0.0, 1.0, 1.0], [1.0, 2.0, 3.0], [0, 1, 2, 3], [1, 0, 1],
              [1.0, 3.0, 2.0])
    courses, ts, pop, indptr, other, gain = cooc_gains_batch(*inputs, HL_MS)
    assert courses.tolist() == [0, 1] and ts.tolist() == [ts0 + HL_MS, ts0 + HL_MS]
    assert pop.tolist() == [1.0 + 2.0 * 0.5, 1.0 * 0.5]
    assert indptr.tolist() == [0, 1, 2] and other.tolist() == [1, 0]
    assert gain.tolist() == [1.0 + 0.5 + 0.5, 1.0 + 0.5 + 0.5]
    for a, b in zip((courses, ts, pop, indptr, other, gain), cooc_gains_batch_numpy(*inputs, HL_MS), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    none_gain = cooc_gains_batch([0], [ts0], [2.0], [3.0], [0, 2], [1, 2], [1.0, 2.0], HL_MS)  # others <= old_w
    assert none_gain[0].tolist() == [0] and none_gain[3].tolist() == [0, 0] and none_gain[2].tolist() == [1.0]


def test_cooc_gains_batch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="offsets"):
        cooc_gains_batch([0], [1], [0.0], [1.0], [0, 3], [1, 2], [1.0, 2.0], HL_MS)
    with pytest.raises(ValueError, match="rises"):
        cooc_gains_batch([0], [1], [2.0], [1.0], [0, 1], [1], [1.0], HL_MS)
    with pytest.raises(ValueError, match="own course"):
        cooc_gains_batch([0], [1], [0.0], [1.0], [0, 1], [0], [1.0], HL_MS)
    with pytest.raises(ValueError, match="range"):
        cooc_gains_batch([0], [1], [0.0], [1.0], [0, 1], [5], [1.0], HL_MS, 3)
    with pytest.raises(ValueError, match="half_life"):
        cooc_gains_batch([0], [1], [0.0], [1.0], [0, 1], [1], [1.0], 0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 3), st.integers(-3, 3)),
                min_size=1, max_size=60), st.integers(1, 3))
def test_cooc_rises_merged_updates_equal_the_per_rise_updates_merged(steps, max_history):
    """The ingest agent's path (CoocRises.merged_updates, one fused kernel call) == the per-rise
    updates (CoocRises.updates, as cooc_updates gives them event by event) merged per course as
    the agent did before, on events whose ts go back and forth by up to 3 half-lives."""
    ts0 = 1_767_225_600_000
    states: dict[str, UserState] = {}
    rises = CoocRises(max_history=max_history)
    expected = []
    for n, (u, c, action, dt) in enumerate(steps):
        uid, cid, ts = f"u{u}", f"c{c}", ts0 + dt * HL_MS + n
        state = states.setdefault(uid, UserState(uid))
        old = engagement_level(state.courses.get(cid))
        state.apply(View(event_id=f"e{n}", user_id=uid, ts=ts, schema_version=1, course_id=cid,
                         lesson_id="l", watch_seconds=1.0, progress=(0.2, 0.5, 0.95, 0.95)[action]))
        if action == 3:
            state.apply(Purchase(event_id=f"p{n}", user_id=uid, ts=ts, schema_version=1, amount=1.0,
                                 currency="CNY", order_id=f"o{n}", course_id=cid))
        new = engagement_level(state.courses.get(cid))
        expected.extend(cooc_updates(state, cid, old, new, ts, max_history=max_history))
        rises.add(state, cid, old, new, ts)
    assert rises.updates() == expected
    _assert_same_updates(rises.merged_updates(HL_MS), _merge_per_course(expected, HL_MS))
    assert CoocRises().merged_updates(HL_MS) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30), st.integers(0, 3), st.integers(0, 5)),
                min_size=1, max_size=80))
def test_recommender_learn_applies_exactly_the_row_updates(steps):
    """``OnlineRecommender.learn`` (rows updated directly) == applying ``cooc_updates``, and the
    updates' gains are the ``pair_increments`` kernel's."""
    from models.recommend import LEVEL_WEIGHTS, OnlineRecommender

    ts = 1_767_225_600_000
    rec = OnlineRecommender(refresh_ms=10**15)
    rows = CooccurrenceRows(half_life_days=rec.half_life_days)
    order: list[str] = []
    states: dict[str, UserState] = {}
    for n, (u, c, action, dt) in enumerate(steps):
        uid, cid, t = f"u{u}", f"c{c}", ts + n * dt * 86_400_000
        state = states.setdefault(uid, UserState(uid))
        old = engagement_level(state.courses.get(cid))
        if action == 3:
            event = Purchase(event_id=f"e{n}", user_id=uid, ts=t, schema_version=1, amount=1.0,
                             currency="CNY", order_id=f"o{n}", course_id=cid)
        else:
            event = View(event_id=f"e{n}", user_id=uid, ts=t, schema_version=1, course_id=cid,
                         lesson_id="l", watch_seconds=1.0, progress=(0.2, 0.5, 0.95)[action])
        state.apply(event)
        new = engagement_level(state.courses.get(cid))
        updates = cooc_updates(state, cid, old, new, t)
        if updates:
            others = [(o, e) for o, e in state.courses.items() if o != cid and t - e[0] <= 90 * 86_400_000]
            others = sorted(others, key=lambda ce: ce[1][0], reverse=True)[:20] if len(others) > 20 else others
            w = np.array([LEVEL_WEIGHTS[engagement_level(e)] for _, e in others])
            gains = pair_increments(LEVEL_WEIGHTS[old], LEVEL_WEIGHTS[new], w) if others else []
            assert updates[0].pairs == tuple((o, float(g)) for (o, _), g in zip(others, gains, strict=True) if g > 0)
        for update in updates:
            rows.apply(update)
            if update.course_id not in order:
                order.append(update.course_id)
        rec.learn(state, cid, old, new, t)
    assert rec.rows.entries == rows.entries and rec.rows.dirty == rows.dirty
    assert rec.index.ids == order


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(0, 12), st.integers(0, 6), st.integers(0, 10_000), st.booleans())
def test_rank_candidates_equals_its_numpy_reference(n_items, n_recent, n_seen, seed, ties):
    """Every score part, the blocked courses and the k best (ties by index) as the reference."""
    from models.kernels import rank_candidates, rank_candidates_numpy

    rng = np.random.default_rng(seed)
    k = 6
    neigh_idx = np.full((n_items, k), -1, dtype=np.int64)
    for row in neigh_idx:
        m = int(rng.integers(0, min(k, n_items) + 1))
        row[:m] = rng.choice(n_items, size=m, replace=False)
    neigh_sim = -np.sort(-rng.choice([0.25, 0.5, 1.0], (n_items, k)) if ties else -rng.random((n_items, k)), axis=1)
    items = rng.choice(n_items, size=min(n_recent, n_items), replace=False).astype(np.int64)
    weights = rng.choice([0.5, 1.0], items.size) if ties else rng.random(items.size)
    pop = rng.choice([0.0, 1.0, 2.0], n_items) if ties else rng.exponential(1.0, n_items)
    pop_norm = pop / pop.max() if pop.max() > 0 else np.zeros(n_items)
    trending = 0.02 * pop_norm
    cats = rng.integers(-1, 4, n_items).astype(np.int64)
    affinity = np.append(rng.choice([0.0, 0.5, 1.0], 4), 0.0)
    now = 1_767_225_600_000
    published = now - rng.choice([-1, 0, 3, 20, 400], n_items).astype(np.int64) * 86_400_000
    seen = rng.choice(n_items, size=min(n_seen, n_items), replace=False).astype(np.int64)
    kw = {"now": now, "new_after": now - 14 * 86_400_000.0, "seen": seen, "w_similar": 1.0, "w_popular": 0.15,
          "w_new": 0.25, "k": 8}
    got = rank_candidates(items, weights, neigh_idx, neigh_sim, n_items, pop_norm, trending, cats, affinity,
                          published, **kw)
    want = rank_candidates_numpy(items, weights, neigh_idx, neigh_sim, n_items, pop_norm, trending, cats, affinity,
                                 published, **kw)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 127, 128, 129, 255, 256, 1000, 4099])
def test_pairwise_sum_is_numpys_sum_to_the_last_bit(n):
    from models.kernels import _pairwise_sum

    rng = np.random.default_rng(n)
    a = rng.random(n) * 10.0 ** rng.uniform(-8, 8, n)
    assert _pairwise_sum(a, 0, n) == float(a.sum())
    if n > 3:
        assert _pairwise_sum(a, 3, n - 3) == float(a[3:].sum())


def test_rank_users_rejects_bad_sizes():
    from models.kernels import rank_users

    z = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError, match="k >= n"):
        rank_users(z, z[:0], z[:0], np.zeros(0), np.zeros(0, dtype=bool), z, z[:0], z, z, np.ones((1, 1)),
                   np.ones((1, 1)), np.full((1, 2), -1), np.zeros((1, 2)), 1, z, 1, z, max_history=5,
                   half_life_ms=1.0, completion=0.9, level_weights=np.arange(4.0), new_ms=1.0, w_similar=1.0,
                   w_popular=1.0, w_new=1.0, k=2, n=3, per_category=1)


def _users_case(seed: int, users: int, n_items: int, max_history: int):
    rng = np.random.default_rng(seed)
    now0 = 1_767_225_600_000
    counts = rng.integers(0, max_history + 8, users)
    u_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(u_off[-1])
    # a user's courses are distinct (a state's dict), some not in the index (-1)
    c_idx = np.concatenate([*(rng.permutation(max(n_items, max_history + 8))[:c] for c in counts), np.zeros(0)])
    c_idx = np.where((rng.random(total) < 0.9) & (c_idx < n_items), c_idx, -1).astype(np.int64)
    c_ts = now0 - rng.integers(0, 30, total).astype(np.int64) * 86_400_000  # many ties
    c_prog = rng.choice([0.1, 0.5, 0.95], total)
    c_bought = rng.random(total) < 0.1
    seen = [np.unique(np.append(c_idx[u_off[u]:u_off[u + 1]][c_idx[u_off[u]:u_off[u + 1]] >= 0],
                                rng.integers(0, n_items, 2))) for u in range(users)]
    s_off = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    s_idx = np.concatenate([*seen, np.zeros(0)]).astype(np.int64)
    nows = now0 + rng.choice([0, 5, 86_400_000], users).astype(np.int64)
    pop_rows = rng.integers(0, 2, users).astype(np.int64)
    pop = rng.exponential(1.0, (2, n_items))
    pop_norm = pop / pop.max(axis=1, keepdims=True)
    neigh_idx = np.full((n_items, 8), -1, dtype=np.int64)  # distinct neighbours, -1 pads last
    for i in range(n_items):
        m = int(rng.integers(0, min(8, n_items) + 1))
        neigh_idx[i, :m] = rng.permutation(n_items)[:m]
    neigh_sim = np.where(neigh_idx >= 0, rng.random((n_items, 8)), 0.0)
    cats = rng.integers(-1, 6, n_items).astype(np.int64)
    published = now0 - rng.integers(-2, 40, n_items).astype(np.int64) * 86_400_000
    args = (u_off, c_idx, c_ts, c_prog, c_bought, s_off, s_idx, nows, pop_rows, pop_norm, 0.02 * pop_norm,
            neigh_idx.astype(np.int64), neigh_sim, n_items, cats, 6, published)
    kw = {"max_history": max_history, "half_life_ms": 7 * 86_400_000.0, "completion": 0.9,
          "level_weights": np.array([0.0, 1.0, 2.0, 3.0]), "new_ms": 14 * 86_400_000.0, "w_similar": 1.0,
          "w_popular": 0.15, "w_new": 0.25, "k": 40, "n": 10, "per_category": 3}
    return args, kw


@pytest.mark.parametrize(("seed", "users", "n_items", "max_history"),
                         [(0, 1, 5, 20), (1, 30, 60, 20), (2, 50, 300, 5), (3, 8, 1000, 20), (4, 20, 40, 140)])
def test_rank_users_equals_its_numpy_reference(seed, users, n_items, max_history):
    from models.kernels import rank_users, rank_users_numpy

    args, kw = _users_case(seed, users, n_items, max_history)
    got = rank_users(*args, **kw)
    want = rank_users_numpy(*args, **kw)
    for g, w in zip(got[1:], want[1:], strict=True):
        np.testing.assert_array_equal(g, w)
    assert got[1].sum() > 0
    np.testing.assert_array_equal(got[0][:, :, [0, 6, 7]], want[0][:, :, [0, 6, 7]])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=0)
