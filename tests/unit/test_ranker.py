"""``Ranker.recommend`` gives exactly the lists of its first, plain-NumPy formulation (with the
best ``n * 4`` candidates taken by score, ties by index, as ``rank_candidates`` does)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.kernels import score_candidates
from models.profile import DAY_MS, UserState
from models.recommend import LEVEL_WEIGHTS, NeighbourIndex, Ranker, engagement_level

NOW = 1_767_225_600_000


def _reference(r: Ranker, state: UserState, index: NeighbourIndex, now: int) -> list[tuple[str, float, str]]:
    """The ranking as first written (one array expression per score part)."""
    n_items = index.size
    if n_items == 0:
        return []
    recent = sorted(state.courses.items(), key=lambda ce: ce[1][0], reverse=True)[: r.max_history]
    items, weights, levels = [], [], []
    hl = r.user_half_life_days * DAY_MS
    for c, e in recent:
        i = index.pos.get(c)
        if i is None:
            continue
        level = engagement_level(e, r.completion)
        items.append(i)
        levels.append(level)
        weights.append(LEVEL_WEIGHTS[level] * 2.0 ** (-max(0, now - e[0]) / hl))
    w = np.asarray(weights, dtype=np.float64)
    total_w = float(w.sum()) or 1.0
    if items:
        cf, reason_of = score_candidates(np.asarray(items), w, index.neigh_idx, index.neigh_sim, n_items)
        cf = cf / total_w
    else:
        cf, reason_of = np.zeros(n_items), np.full(n_items, -1)
    pop = index.popularity(now)
    pop_norm = pop / pop.max() if pop.size and pop.max() > 0 else np.zeros(n_items)
    cats = index.cat[:n_items]
    affinity = np.zeros(max(len(index.categories), 1) + 1)
    for i, wi in zip(items, weights, strict=True):
        affinity[cats[i]] += wi
    affinity[-1] = 0.0
    if affinity.sum() > 0:
        affinity /= affinity.max()
    cat_aff = np.where(cats >= 0, affinity[cats], 0.0)
    popular = r.w_popular * cat_aff * pop_norm
    published = index.published[:n_items]
    is_new = (published > now - r.new_days * DAY_MS) & (published <= now)
    new = r.w_new * is_new * np.maximum(cat_aff, 0.2)
    trending = r.w_trending * pop_norm
    similar = r.w_similar * cf
    total = similar + popular + new + trending
    blocked = np.zeros(n_items, dtype=bool)
    for c in (*state.courses, *state.owned):
        i = index.pos.get(c)
        if i is not None:
            blocked[i] = True
    blocked |= published > now
    total = np.where(blocked, -np.inf, total)
    chosen: list[tuple[str, float, str]] = []
    per_cat: dict[int, int] = {}
    for i in np.lexsort((np.arange(n_items), -total))[: r.n * 4]:  # best first, ties by index
        if not np.isfinite(total[i]) or total[i] <= 0:
            break
        c = int(cats[i])
        if per_cat.get(c, 0) >= r.per_category and c >= 0:
            continue
        per_cat[c] = per_cat.get(c, 0) + 1
        chosen.append((index.ids[i], round(float(total[i]), 6), r._reason(
            index, int(i), similar[i], popular[i], new[i], trending[i], reason_of[i], items, levels)))
        if len(chosen) == r.n:
            break
    return chosen


def _world(seed: int) -> tuple[NeighbourIndex, list[UserState]]:
    rng = random.Random(seed)
    index = NeighbourIndex(k=8)
    n = rng.randint(5, 80)
    for c in range(n):
        if rng.random() < 0.8:  # some courses have no catalogue entry (category -1)
            index.set_course(f"c{c}", f"title {c}", f"cat{rng.randint(0, 6)}", (),
                             NOW - rng.choice([0, 1, 3, 20, 400]) * DAY_MS + rng.choice([0, 0, 0, DAY_MS]))
    for c in range(n):
        if rng.random() < 0.9:
            neigh = [(f"c{o}", rng.choice([0.1, 0.25, 0.5, rng.random()])) for o in rng.sample(range(n), rng.randint(0, 8))]
            index.update(f"c{c}", rng.choice([0.0, 1.0, 2.0, rng.random() * 5]), NOW - rng.randint(0, 5) * DAY_MS, neigh)
    users = []
    for u in range(12):
        s = UserState(f"u{u}")
        for c in rng.sample(range(n), rng.randint(0, min(n, 25))):
            s.courses[f"c{c}"] = [NOW - rng.randint(0, 30) * DAY_MS, rng.choice([0.1, 0.5, 0.95]), 60.0, rng.random() < 0.1]
        s.owned = [f"c{c}" for c in rng.sample(range(n), rng.randint(0, 3))]
        users.append(s)
    return index, users


@pytest.mark.parametrize("seed", range(40))
def test_recommend_equals_the_reference_formulation(seed):
    index, users = _world(seed)
    rankers = [Ranker(), Ranker(n=3, per_category=1), Ranker(w_new=0.0, w_trending=0.5)]
    for now in (NOW, NOW + 2 * DAY_MS, NOW - DAY_MS):
        for r in rankers:
            for s in users:
                assert r.recommend(s, index, now) == _reference(r, s, index, now)
        index.update("c0", 3.0, now, [("c1", 0.5)])  # a new version between the times


@pytest.mark.parametrize("seed", range(40))
def test_recommend_many_ranks_every_user_as_one_call_each(seed):
    """One kernel call for users at different times gives each user's reference list."""
    index, users = _world(seed)
    rng = random.Random(seed)
    for r in (Ranker(), Ranker(n=3, per_category=1, max_history=5)):
        owed = [(s, NOW + rng.choice([0, 0, DAY_MS, -3 * DAY_MS, 17])) for s in users]
        assert r.recommend_many(owed, index) == [_reference(r, s, index, now) for s, now in owed]
    assert Ranker().recommend_many([], index) == []
    assert Ranker().recommend_many([(users[0], NOW)], NeighbourIndex(k=8)) == [[]]


def test_recommend_many_long_histories_sum_weights_as_numpy_does():
    """Over 128 recent courses the weights' total is NumPy's pairwise sum, to the last bit."""
    rng = random.Random(3)
    index = NeighbourIndex(k=8)
    n = 400
    for c in range(n):
        index.set_course(f"c{c}", f"t{c}", f"cat{c % 9}", (), NOW - 100 * DAY_MS)
        index.update(f"c{c}", rng.random(), NOW, [(f"c{o}", rng.random()) for o in rng.sample(range(n), 8)])
    s = UserState("u")
    for c in rng.sample(range(n), 300):
        s.courses[f"c{c}"] = [NOW - rng.randint(0, 10**9), rng.random(), 1.0, rng.random() < 0.2]
    r = Ranker(max_history=260)
    assert r.recommend_many([(s, NOW), (s, NOW + 5)], index) == [_reference(r, s, index, NOW),
                                                                  _reference(r, s, index, NOW + 5)]
