"""Numba kernels against their NumPy references; incremental co-occurrence equals batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.kernels import (
    pair_increments,
    pair_increments_numpy,
    row_similarities,
    row_similarities_numpy,
    score_candidates,
    score_candidates_numpy,
    top_k,
)
from models.profile import UserState
from models.recommend import (
    LEVEL_WEIGHTS,
    CooccurrenceRows,
    cooc_updates,
    engagement_level,
    inflation,
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
