"""Numba kernels against their NumPy references; incremental co-occurrence equals batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.kernels import (
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
        histories = {s.user_id: {c: engagement_level(e) for c, e in s.courses.items()} for s in states.values()}
        co, pop = _batch_cooccurrence(histories)
        got_co = {(a, b): v / scale for a, row in rows.rows.items() for b, v in row.items() if v}
        assert got_co == pytest.approx({k: v for k, v in co.items() if v})
        assert {c: v / scale for c, v in rows.pop.items() if v} == pytest.approx({c: v for c, v in pop.items() if v})


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
