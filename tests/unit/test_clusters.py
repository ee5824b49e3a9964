"""Online activity clusters: they separate usage patterns and describe them from their centres."""

from __future__ import annotations

import pickle
import random
from collections import Counter

import pytest

from models.churn import churn_features
from models.clusters import CLUSTER_FEATURES, ActivityClusters
from models.profile import DAY_MS, UserState
from schemas.events import Purchase, View

T0 = 1_767_225_600_000
H = 3_600_000


def user(rng: random.Random, uid: str, kind: str) -> dict[str, float]:
    """Features of a 'devoted' (daily, long sessions, buys) or 'casual' (weekly, short) user."""
    devoted = kind == "devoted"
    s = UserState(uid)
    t, i = T0 + rng.randint(0, 5) * DAY_MS, 0
    while t < T0 + 60 * DAY_MS:
        for _ in range(rng.randint(2, 4) if devoted else 1):
            i += 1
            t += rng.randint(5, 30) * 60_000
            s.apply(View(event_id=f"{uid}-{i}", user_id=uid, ts=t, schema_version=1,
                         course_id=f"c{i % 5}", lesson_id="l",
                         watch_seconds=rng.uniform(1500, 3000) if devoted else rng.uniform(60, 400),
                         progress=min(1.0, i / 30) if devoted else 0.05))
        if devoted and rng.random() < 0.15:
            i += 1
            s.apply(Purchase(event_id=f"{uid}-{i}", user_id=uid, ts=t + 1, schema_version=1,
                             amount=99.0, currency="CNY", order_id=f"o{uid}{i}", course_id="c1"))
        t += int(rng.uniform(0.5, 1.5 if devoted else 12.0) * DAY_MS)
    return churn_features(s, s.last_ts + H)


@pytest.fixture(scope="module")
def population() -> list[tuple[str, dict[str, float]]]:
    rng = random.Random(11)
    people = [(k, user(rng, f"{k}{i}", k)) for i in range(150) for k in ("devoted", "casual")]
    rng.shuffle(people)
    return people


def fit(people: list[tuple[str, dict[str, float]]], **kw: int) -> ActivityClusters:
    model = ActivityClusters(**kw)
    for _ in range(3):
        for _, x in people:
            model.learn(x)
    return model


def test_clusters_separate_usage_patterns_and_describe_them(population):
    model = fit(population, n_clusters=2)
    by_cluster: dict[int, Counter[str]] = {}
    for kind, x in population:
        by_cluster.setdefault(model.predict(x), Counter())[kind] += 1
    assert len(by_cluster) == 2
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / len(population)
    assert purity > 0.95
    names = {c.most_common(1)[0][0]: model.describe(cid) for cid, c in by_cluster.items()}
    devoted, casual = names["devoted"].split(", "), names["casual"].split(", ")
    assert devoted[-1] == "buyers" and casual[-1] == "no purchases"
    assert len({"frequent", "long sessions", "heavy watchers", "finish courses"} & set(devoted)) >= 2
    assert len({"occasional", "short sessions", "light watchers", "rarely finish"} & set(casual)) >= 2
    assert len(devoted) <= 4 and len(casual) <= 4  # three traits at most, then purchases


def test_four_clusters_each_mostly_one_kind_with_descriptions_from_centres(population):
    model = fit(population)  # the default: 4 clusters
    assert model.n_clusters == 4
    counts: dict[int, Counter[str]] = {}
    for kind, x in population:
        counts.setdefault(model.predict(x), Counter())[kind] += 1
    for cid, c in counts.items():
        kind, n = c.most_common(1)[0]
        assert n / sum(c.values()) > 0.9
        text = model.describe(cid)
        assert ("no purchases" in text) == (kind == "casual"), (kind, text)
    centre = model.centre(next(iter(counts)))
    assert set(centre) == set(CLUSTER_FEATURES)


def test_deterministic_for_a_seed(population):
    a, b = fit(population, seed=5), fit(population, seed=5)
    assert [a.predict(x) for _, x in population] == [b.predict(x) for _, x in population]
    assert a.describe_all() == b.describe_all()
    c = pickle.loads(pickle.dumps(a))
    assert c.describe_all() == a.describe_all() and c.centre(0) == a.centre(0)


def test_before_warmup_and_bad_input(population):
    model = ActivityClusters(warmup=10)
    x = population[0][1]
    assert model.predict(x) == -1 and not model.ready and model.describe_all() == {}
    with pytest.raises(ValueError):
        model.describe(0)
    for _, y in population[:10]:
        model.learn(y)
    assert model.ready and 0 <= model.predict(x) < 4
    with pytest.raises(ValueError, match="missing"):
        model.learn({"sessions_per_week": 1.0})
    with pytest.raises(ValueError):
        model.describe(7)
