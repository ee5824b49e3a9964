"""Churn features, the online classifier, delayed labels, and the churn/repurchase models.

Also the contract every model of ``models/churn.py``, ``models/alerts.py`` and
``models/clusters.py`` keeps (River's ``check_estimator`` in spirit): pickle round-trip gives the
same predictions, learning leaves its input unchanged, bad constructor arguments raise ValueError,
``clone`` rebuilds an unfitted model from the constructor arguments.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import math
import pickle
import random
import sys
from array import array
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.alerts import AlertPolicy, SilenceScheduler
from models.churn import (
    CHURN_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    ChurnModel,
    DelayedLabels,
    OnlineClassifier,
    RepurchaseModel,
    churn_features,
    clone,
    pack_rows,
    unpack_row,
)
from models.clusters import ActivityClusters
from models.profile import DAY_MS, UserState
from schemas.events import Purchase, Share, View

T0 = 1_767_225_600_000  # 2026-01-01
H = 3_600_000


# ---------------------------------------------------------------------------------------------
# a synthetic platform: churners' activity thins out and shortens before they go silent


def user_events(rng: random.Random, uid: str, start: int, end: int) -> tuple[bool, list[Any]]:
    """One user's events; churners (40%) space out visits and watch less, then stop."""
    churner = rng.random() < 0.4
    stop = start + int(rng.uniform(20, 50) * DAY_MS) if churner else end
    base_gap = rng.uniform(0.7, 2.5)
    base_watch = rng.uniform(600, 2400)
    buyer = rng.random() < 0.5
    events: list[Any] = []
    t = start
    n = 0
    while t < min(stop, end):
        frac = (t - start) / (stop - start) if churner else 0.0
        for _ in range(rng.randint(1, 3)):  # a visit: a few views minutes apart
            n += 1
            t += rng.randint(1, 15) * 60_000
            events.append(View(event_id=f"{uid}-v{n}", user_id=uid, ts=t, schema_version=1,
                               course_id=f"c{rng.randint(1, 20)}", lesson_id="l1",
                               watch_seconds=base_watch * (1 - 0.8 * frac) * rng.uniform(0.5, 1.5),
                               progress=min(1.0, rng.random() * 1.1)))
        if buyer and rng.random() < 0.08 * (1 - frac):
            n += 1
            t += 60_000
            events.append(Purchase(event_id=f"{uid}-p{n}", user_id=uid, ts=t, schema_version=1,
                                   amount=rng.choice([49.0, 99.0, 199.0]), currency="CNY",
                                   order_id=f"{uid}-o{n}", course_id=f"c{rng.randint(1, 20)}"))
        if rng.random() < 0.03:
            n += 1
            t += 60_000
            events.append(Share(event_id=f"{uid}-s{n}", user_id=uid, ts=t, schema_version=1,
                                course_id="c1", channel="link", share_id=f"{uid}-sh{n}"))
        gap = min(base_gap * (1 + 4 * frac) * rng.expovariate(1.0), 9.0 if not churner else 30.0)
        t += int((0.3 + gap) * DAY_MS)
    return churner, events


def synthetic(n_users: int, seed: int, days: int = 90) -> dict[str, list[Any]]:
    rng = random.Random(seed)
    end = T0 + days * DAY_MS
    return {f"u{seed}-{i}": user_events(rng, f"u{seed}-{i}", T0 + int(rng.uniform(0, 20) * DAY_MS), end)[1]
            for i in range(n_users)}


def merged(users: dict[str, list[Any]]) -> Iterator[Any]:
    return heapq.merge(*users.values(), key=lambda e: e.ts)


def train(model: ChurnModel | RepurchaseModel, users: dict[str, list[Any]]) -> dict[str, UserState]:
    """Replay the users' events in event-time order through the model, as the agent does.

    The watermark stops at the last event: advancing it past the end of the data would label
    every user still pending as churned (they are censored, not gone).
    """
    states: dict[str, UserState] = {}
    last = 0
    for e in merged(users):
        state = states.setdefault(e.user_id, UserState(e.user_id))
        state.apply(e)
        model.observe(state, e.ts, is_purchase=isinstance(e, Purchase), avg_ltv=150.0)
        if e.ts - last > H:  # the watermark moves hourly
            model.advance(e.ts)
            last = e.ts
    return states


def auc(scores: list[float], labels: list[bool]) -> float:
    """ROC AUC by ranks (Mann-Whitney U), ties counted half."""
    pairs = sorted(zip(scores, labels, strict=True))
    ranks = [0.0] * len(pairs)
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    r_pos = sum(r for r, (_, y) in zip(ranks, pairs, strict=True) if y)
    return (r_pos - pos * (pos + 1) / 2) / (pos * neg)


def test_auc_helper():
    assert auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auc([0.5, 0.5], [False, True]) == 0.5


# ---------------------------------------------------------------------------------------------
# features


def busy_state() -> UserState:
    s = UserState("u1")
    for i in range(10):
        s.apply(View(event_id=f"v{i}", user_id="u1", ts=T0 + i * DAY_MS, schema_version=1,
                     course_id=f"c{i % 3}", lesson_id="l", watch_seconds=1800.0, progress=0.3 * (i % 4)))
    s.apply(Purchase(event_id="p1", user_id="u1", ts=T0 + 5 * DAY_MS, schema_version=1, amount=99.0,
                     currency="CNY", order_id="o1", plan="monthly"))
    return s


def test_features_are_documented_finite_and_leave_the_state_alone():
    s = busy_state()
    before = copy.deepcopy(s.to_dict())
    x = churn_features(s, T0 + 12 * DAY_MS, avg_ltv=100.0)
    assert s.to_dict() == before
    assert tuple(x) == FEATURE_NAMES == tuple(FEATURES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in x.values())
    assert x["recency_days"] == pytest.approx(3.0)
    assert x["has_plan"] == 1.0 and x["days_since_purchase"] == pytest.approx(7.0)
    assert 0 <= x["completion_rate"] <= 1
    empty = churn_features(UserState("u0"), T0)
    assert all(math.isfinite(v) for v in empty.values()) and empty["days_since_purchase"] == 90.0


def test_trend_is_one_at_a_steady_rate_and_falls_in_silence():
    s = UserState("u1")
    for i in range(200):  # a view every 12 h for 100 days: steady state
        s.apply(View(event_id=f"v{i}", user_id="u1", ts=T0 + i * DAY_MS // 2, schema_version=1,
                     course_id="c1", lesson_id="l", watch_seconds=600.0, progress=0.1))
    last = s.last_ts
    assert churn_features(s, last)["watch_trend"] == pytest.approx(1.0, abs=0.1)
    trends = [churn_features(s, last + d * DAY_MS)["watch_trend"] for d in (0, 3, 7, 14)]
    assert trends == sorted(trends, reverse=True) and trends[-1] < 0.3


def test_features_age_with_silence_as_the_model_expects():
    s = busy_state()
    a, b = churn_features(s, s.last_ts), churn_features(s, s.last_ts + 10 * DAY_MS)
    assert b["recency_days"] == pytest.approx(a["recency_days"] + 10)
    assert b["watch_short"] < a["watch_short"] and b["watch_long"] < a["watch_long"]
    assert churn_features(s, s.last_ts + 10_000 * DAY_MS)["recency_days"] == 90.0


# ---------------------------------------------------------------------------------------------
# delayed labels


def test_churn_labels_resolve_on_return_or_at_expiry_never_early():
    dl = DelayedLabels(horizon_ms=14 * DAY_MS, min_interval_ms=DAY_MS)
    assert dl.snapshot("a", "fa", T0)
    assert not dl.snapshot("a", "newer", T0 + H)  # one pending per user: the older is kept
    assert dl.on_activity("a", T0 + 2 * H) == []  # same visit: not a return
    assert dl.on_activity("a", T0 + 3 * DAY_MS) == [("fa", False)]  # came back
    assert "a" not in dl
    dl.snapshot("b", "fb", T0)
    assert dl.advance(T0 + 14 * DAY_MS - 1) == []
    assert dl.advance(T0 + 14 * DAY_MS) == [("fb", True, "b")]
    dl.snapshot("c", "fc", T0)
    assert dl.on_activity("c", T0 + 20 * DAY_MS) == [("fc", True)]  # back, but after the horizon


def test_repurchase_labels_wait_for_a_purchase():
    dl = DelayedLabels(horizon_ms=14 * DAY_MS, min_interval_ms=0, label_on_expiry=False)
    dl.snapshot("a", "fa", T0)
    assert dl.on_activity("a", T0 + DAY_MS, outcome=False) == []  # a view: still waiting
    assert dl.on_activity("a", T0 + H, outcome=True) == [("fa", True)]  # bought
    dl.snapshot("b", "fb", T0)
    assert dl.advance(T0 + 14 * DAY_MS) == [("fb", False, "b")]


def test_delayed_labels_never_come_before_their_time_random_stream():
    rng = random.Random(7)
    horizon = 5 * DAY_MS
    dl = DelayedLabels(horizon_ms=horizon, min_interval_ms=DAY_MS // 2)
    snap_t: dict[str, int] = {}
    wm = T0
    for _ in range(5000):
        wm += rng.randint(0, 6 * H)
        u = f"u{rng.randint(0, 50)}"
        if rng.random() < 0.5:
            for (t0, *_), label in dl.on_activity(u, wm):
                assert wm - t0 >= DAY_MS // 2  # a return, not the same visit
                assert label == (wm - t0 >= horizon)
            if dl.snapshot(u, (wm, u), wm):
                snap_t[u] = wm
        for (t0, uu), label, user in dl.advance(wm):
            assert label and uu == user and t0 == snap_t[user]
            assert wm >= t0 + horizon
    assert dl.pops <= 5000  # each heap entry popped at most once


def test_delayed_labels_advance_pops_only_what_expired():
    dl = DelayedLabels(horizon_ms=DAY_MS, min_interval_ms=0)
    for i in range(20_000):
        dl.snapshot(f"u{i}", i, T0 + i * 1000)
    assert dl.advance(T0 + DAY_MS + 9_000) != [] and dl.pops == 10
    for i in range(10, 20_000):
        dl.on_activity(f"u{i}", T0 + DAY_MS // 2)  # all came back: entries go stale
    assert len(dl) == 0 and len(dl._heap) < 2_000  # compacted, not left to grow
    assert dl.advance(T0 + 10 * DAY_MS) == []


# ---------------------------------------------------------------------------------------------
# the classifier


def toy(rng: random.Random) -> tuple[dict[str, float], bool]:
    a, b = rng.gauss(0, 1), rng.gauss(5, 3)
    return {"a": a, "b": b}, rng.random() < 1 / (1 + math.exp(-(2 * a - 0.5 * (b - 5) / 3)))


@pytest.mark.parametrize("model", ["logreg", "tree"])
def test_classifier_learns_and_contributions_add_up(model: str):
    rng = random.Random(1)
    clf = OnlineClassifier(lr=0.05, model=model)
    assert clf.predict_proba({"a": 1.0, "b": 1.0}) == 0.5
    data = [toy(rng) for _ in range(3000)]
    for x, y in data[:2000]:
        clf.learn(x, y)
    assert clf.n_learned == 2000
    held = data[2000:]
    assert auc([clf.predict_proba(x) for x, _ in held], [y for _, y in held]) > 0.75
    x = {"a": 1.5, "b": 2.0}
    factors = clf.contributions(x)
    assert [f[0] for f in factors] == ["a", "b"] and factors[0][1] == 1.5
    if model == "logreg":
        p = clf.predict_proba(x)
        assert clf.intercept + sum(c for _, _, c in factors) == pytest.approx(math.log(p / (1 - p)))


def test_classifier_counts_drift_in_its_error():
    rng = random.Random(3)
    clf = OnlineClassifier(lr=0.1)
    for i in range(6000):
        x, y = toy(rng)
        clf.learn(x, y if i < 3000 else not y, t=T0 + i)  # the concept flips half-way
    assert clf.drift_count >= 1 and clf.last_drift_at is not None and clf.last_drift_at > T0 + 3000
    assert 0 <= clf.error <= 1


# ---------------------------------------------------------------------------------------------
# the churn model end to end


@pytest.fixture(scope="module")
def trained() -> tuple[ChurnModel, dict[str, list[Any]]]:
    model = ChurnModel()
    train(model, synthetic(250, seed=1))
    return model, synthetic(120, seed=2)


def held_out_queries(model: ChurnModel, users: dict[str, list[Any]], end: int) -> tuple[list[float], list[bool]]:
    """Risk at 0, 3 and 7 days into each silence of held-out users; label: silence >= 14 days."""
    horizon = 14 * DAY_MS
    scores, labels = [], []
    for uid, events in users.items():
        s = UserState(uid)
        for e, nxt in zip(events, [*events[1:], None], strict=True):
            s.apply(e)
            gap_end = nxt.ts if nxt is not None else None
            if gap_end is not None and gap_end - e.ts < 6 * H:
                continue  # mid-visit
            if gap_end is None and end - e.ts < horizon:
                continue  # label unknown
            churned = gap_end is None or gap_end - e.ts >= horizon
            for age in (0, 3, 7):
                q = e.ts + age * DAY_MS
                if gap_end is not None and q >= gap_end:
                    break
                scores.append(model.risk(s, q, avg_ltv=150.0))
                labels.append(churned)
    return scores, labels


def test_churn_model_ranks_held_out_users(trained):
    model, test_users = trained
    scores, labels = held_out_queries(model, test_users, T0 + 90 * DAY_MS)
    assert sum(labels) >= 50 and len(labels) - sum(labels) >= 50
    value = auc(scores, labels)
    print(f"held-out AUC {value:.3f} over {len(labels)} queries ({sum(labels)} churned); "
          f"prequential ROCAUC {model.metric.get():.3f}, {model.n_learned} examples")
    assert value > 0.75
    assert model.metric.get() > 0.65  # delayed prequential evaluation agrees


def test_risk_rises_with_silence_and_explain_adds_up(trained):
    model, test_users = trained
    s = UserState("x")
    for e in next(iter(test_users.values()))[:40]:
        s.apply(dataclasses.replace(e, user_id="x"))
    risks = [model.risk(s, s.last_ts + d * DAY_MS) for d in (0, 3, 7, 12)]
    assert risks[-1] > risks[0]
    now = s.last_ts + 5 * DAY_MS
    factors = model.explain(s, now, top=len(CHURN_FEATURES))
    assert {f["name"] for f in factors} == set(CHURN_FEATURES)
    assert [abs(f["contribution"]) for f in factors] == sorted((abs(f["contribution"]) for f in factors), reverse=True)
    p = model.classifier.predict_learned(model.features(s, now))  # the risk less the recency prior
    logit = model.classifier.intercept + sum(f["contribution"] for f in factors)
    assert logit == pytest.approx(math.log(p / (1 - p)))
    assert len(model.explain(s, now)) == 3


def test_churn_model_learns_only_ages_the_user_was_silent_for():
    model = ChurnModel(ages_days=(0, 2, 5))
    s = busy_state()
    model.observe(s, s.last_ts)
    assert model.labels.pending_since("u1") == s.last_ts
    s.apply(View(event_id="late", user_id="u1", ts=s.last_ts + 3 * DAY_MS, schema_version=1,
                 course_id="c1", lesson_id="l", watch_seconds=60.0, progress=0.1))
    # silent at ages 0 and 2, not 5: two examples, learned once the horizon of that snapshot is
    # over (when a churn of it would have been known)
    assert model.observe(s, s.last_ts) == 0
    assert model.advance(s.last_ts + 11 * DAY_MS) == 2
    assert model.advance(s.last_ts + 14 * DAY_MS) == 3  # stayed away: every age, churned


def _retained_bytes(values: Any) -> int:
    """Bytes a container of floats keeps alive: itself, plus each float object it points to."""
    size = sys.getsizeof(values)
    if not isinstance(values, array):  # an array holds raw doubles, not float objects
        size += sum(sys.getsizeof(v) for v in values)
    return size


def test_churn_snapshots_keep_their_features_as_doubles():
    # one snapshot per user is pending and up to horizon / min interval per user are held until
    # their horizon: they were the largest per-user structure of a worker (docs/reliability.md)
    model = ChurnModel()
    s = busy_state()
    model.observe(s, s.last_ts)
    t0, feats, preds = model.labels._pending["u1"][1]  # noqa: SLF001 - the stored form is the point
    ages, n = len(model.ages_days), len(model.feature_names)
    first, cols, rest = feats
    assert len(first) == n and len(preds) == ages and len(rest) == len(cols) * (ages - 1)
    # the later ages keep only the columns that change with the silence (recency, windows, ...)
    assert 0 < len(cols) < n
    assert sum(_retained_bytes(x) for x in (first, rest, preds)) + sys.getsizeof(cols) <= 8 * (
        n + len(rest) + ages) + 3 * 96 + 64
    # and what is learned from them is exactly the features computed at the snapshot's ages
    rows = model._feature_rows(s, [t0 + int(age * DAY_MS) for age in model.ages_days], 0.0)  # noqa: SLF001
    assert [unpack_row(feats, i) for i in range(ages)] == [list(x.values()) for x in rows]


@given(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3), min_size=1,
                max_size=8))
def test_packed_rows_give_back_every_row_exactly(rows):
    packed = pack_rows(rows)
    out = [unpack_row(packed, i) for i in range(len(rows))]
    assert [[repr(v) for v in row] for row in out] == [[repr(v) for v in row] for row in rows]


def test_repurchase_model_learns_buyers():
    model = RepurchaseModel()
    train(model, synthetic(120, seed=3))
    assert model.n_learned > 100
    buyer, browser = busy_state(), UserState("b")
    browser.apply(View(event_id="v", user_id="b", ts=T0, schema_version=1, course_id="c1",
                       lesson_id="l", watch_seconds=60.0, progress=0.1))
    assert 0 <= model.propensity(browser, T0 + DAY_MS) <= 1
    assert model.propensity(buyer, buyer.last_ts) != model.propensity(browser, T0 + DAY_MS)


# ---------------------------------------------------------------------------------------------
# the contract every model keeps


def feature_stream(n: int = 120, seed: int = 5) -> list[dict[str, float]]:
    users = synthetic(8, seed=seed, days=40)
    states: dict[str, UserState] = {}
    out = []
    for e in merged(users):
        s = states.setdefault(e.user_id, UserState(e.user_id))
        s.apply(e)
        out.append(churn_features(s, e.ts + DAY_MS))
    return out[:: max(1, len(out) // n)][:n]


def state_stream(seed: int = 6) -> list[tuple[UserState, int, bool]]:
    users = synthetic(6, seed=seed, days=60)
    states: dict[str, UserState] = {}
    out = []
    for e in merged(users):
        s = states.setdefault(e.user_id, UserState(e.user_id))
        s.apply(e)
        out.append((copy.deepcopy(s), e.ts, isinstance(e, Purchase)))
    return out


@dataclasses.dataclass
class Case:
    name: str
    make: Callable[[], Any]
    learn: Callable[[Any, Any], None]
    predict: Callable[[Any, Any], Any]
    inputs: Callable[[], list[Any]]
    bad: list[dict[str, Any]]
    frozen: Callable[[Any], Any] = copy.deepcopy  # what must not change when learning


def learn_delayed(m: ChurnModel | RepurchaseModel, item: tuple[UserState, int, bool]) -> None:
    s, ts, buy = item
    m.observe(s, ts, is_purchase=buy)
    m.advance(ts - DAY_MS)


def alert_learn(m: AlertPolicy, item: tuple[str, float, int]) -> None:
    u, risk, now = item
    m.decide(u, risk, now)
    if risk < 0.1:
        m.on_activity(u, now)


def alert_inputs() -> list[tuple[str, float, int]]:
    rng = random.Random(9)
    return [(f"u{rng.randint(0, 9)}", rng.random(), T0 + i * H * 7) for i in range(300)]


def sched_learn(m: SilenceScheduler, item: tuple[str, int]) -> None:
    u, ts = item
    m.touch(u, ts)
    for v in m.due(ts - DAY_MS):
        m.reschedule(v, ts + DAY_MS)


def sched_inputs() -> list[tuple[str, int]]:
    rng = random.Random(10)
    return [(f"u{rng.randint(0, 30)}", T0 + i * H) for i in range(400)]


CASES = [
    Case("OnlineClassifier", OnlineClassifier, lambda m, x: m.learn(x, x["recency_days"] > 2),
         lambda m, x: m.predict_proba(x), feature_stream,
         [{"l2": -1.0}, {"lr": 0.0}, {"lr": float("nan")}, {"model": "svm"}, {"drift_delta": 2.0}]),
    Case("OnlineClassifier-tree", lambda: OnlineClassifier(model="tree", seed=3),
         lambda m, x: m.learn(x, x["recency_days"] > 2), lambda m, x: m.predict_proba(x), feature_stream,
         [{"model": "tree", "seed": "x"}]),
    Case("ChurnModel", ChurnModel, learn_delayed, lambda m, it: (m.risk(it[0], it[1] + 3 * DAY_MS),
                                                                 m.explain(it[0], it[1])),
         state_stream, [{"horizon_days": 0}, {"min_interval_days": 20}, {"ages_days": (1, 2)},
                        {"ages_days": (0, 20)}, {"ages_days": (0, 3, 2)}, {"lr": -1}, {"model": "x"}],
         frozen=lambda it: copy.deepcopy(it[0].to_dict())),
    Case("RepurchaseModel", RepurchaseModel, learn_delayed,
         lambda m, it: m.propensity(it[0], it[1]), state_stream,
         [{"horizon_days": -1}, {"l2": -1}, {"model": "knn"}], frozen=lambda it: copy.deepcopy(it[0].to_dict())),
    Case("ActivityClusters", lambda: ActivityClusters(warmup=20), lambda m, x: m.learn(x),
         lambda m, x: (m.predict(x), m.describe_all()), feature_stream,
         [{"n_clusters": 0}, {"halflife": 0}, {"warmup": 2, "n_clusters": 4}, {"seed": None}]),
    Case("AlertPolicy", AlertPolicy, alert_learn, lambda m, it: (m.is_open(it[0]), m.decide(*it)),
         alert_inputs, [{"threshold": 1.5}, {"release": 0.7}, {"cooldown_days": -1}, {"discount_pct": 0}]),
    Case("SilenceScheduler", SilenceScheduler, sched_learn,
         lambda m, it: (len(m), m.scheduled_at(it[0]), m.due(it[1])), sched_inputs,
         [{"first_check_days": 0}, {"first_check_days": "3"}]),
    Case("DelayedLabels", DelayedLabels, lambda m, it: (m.on_activity(it[0], it[1]), m.snapshot(it[0], [it[1]], it[1])),
         lambda m, it: (len(m), m.advance(it[1] - DAY_MS)), sched_inputs,
         [{"horizon_ms": 0}, {"min_interval_ms": 20 * DAY_MS}, {"label_on_expiry": 1}]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_contract_pickle_round_trip_gives_identical_predictions(case: Case):
    items = case.inputs()
    half = len(items) // 2
    model = case.make()
    for it in items[:half]:
        case.learn(model, it)
    twin = pickle.loads(pickle.dumps(model))
    for it in items[half:]:  # both keep learning and must stay identical
        assert case.predict(model, it) == case.predict(twin, it)
        case.learn(model, it)
        case.learn(twin, it)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_contract_learning_leaves_the_input_unchanged(case: Case):
    model = case.make()
    for it in case.inputs():
        before = case.frozen(it)
        case.learn(model, it)
        case.predict(model, it)
        assert case.frozen(it) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_contract_bad_arguments_raise_value_error(case: Case):
    for kwargs in case.bad:
        with pytest.raises(ValueError):
            type(case.make())(**kwargs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_contract_clone_is_unfitted_with_the_same_arguments(case: Case):
    model = case.make()
    for it in case.inputs()[:50]:
        case.learn(model, it)
    fresh, again = clone(model), model.clone()
    assert type(fresh) is type(model) and vars(fresh).keys() == vars(model).keys()
    first = case.inputs()[0]
    blank = case.make()
    assert case.predict(fresh, first) == case.predict(blank, first) == case.predict(again, first)


# ---------------------------------------------------------------------------------------------
# the fast feature path computes exactly what the profile-based definition does


def _reference_features(state: UserState, now: int, avg_ltv: float = 0.0) -> dict[str, float]:
    """:func:`churn_features` as first written: from the published profile (rounded figures)."""
    from models.churn import _STEADY_RATIO, _TREND_MAX, PURCHASE_CAP_DAYS, RECENCY_CAP_DAYS
    from models.profile import build_profile

    profile = build_profile(state, now, avg_ltv)
    ws, wl, es, el = state.activity_at(now)
    ratio = ws / wl if wl > 1.0 else es / el if el > 1e-9 else 0.0
    tenure_days = profile.tenure_days
    sessions = max(state.sessions, 0)
    if state.last_purchase_ts > 0:
        since_purchase = min(PURCHASE_CAP_DAYS, max(0.0, (now - state.last_purchase_ts) / DAY_MS))
    else:
        since_purchase = PURCHASE_CAP_DAYS
    per_week = sessions / max(tenure_days / 7.0, 1.0)
    recency = min(RECENCY_CAP_DAYS, profile.recency_days)
    x = {
        "recency_days": recency,
        "tenure_log": math.log1p(tenure_days),
        "sessions_per_week": per_week,
        "recency_log": math.log1p(recency),
        "silence_ratio": math.log1p(recency * per_week / 7.0),
        "events_log": math.log1p(max(0, state.views + state.purchases + state.shares)),
        "watch_short": math.log1p(max(ws, 0.0) / 3600.0),
        "watch_long": math.log1p(max(wl, 0.0) / 3600.0),
        "watch_trend": min(_TREND_MAX, max(0.0, ratio / _STEADY_RATIO)),
        "watch_per_session": math.log1p(max(state.watch_s, 0.0) / 60.0 / max(sessions, 1)),
        "completion_rate": min(1.0, max(state.completed, 0) / max(len(state.courses), 1)),
        "purchases_log": math.log1p(max(state.purchases, 0)),
        "days_since_purchase": since_purchase,
        "has_plan": 1.0 if state.plan else 0.0,
        "shares_log": math.log1p(max(state.shares, 0)),
        "activity_log": math.log1p(max(profile.activity, 0.0)),
        "loyalty_log": math.log1p(max(profile.loyalty, 0.0)),
    }
    return {k: float(v) if math.isfinite(v) else 0.0 for k, v in x.items()}


def test_churn_features_equal_the_profile_based_definition_bit_for_bit():
    from models.churn import churn_feature_rows

    rng = random.Random(5)
    checked = 0
    for events in synthetic(30, seed=11, days=60).values():
        state = UserState(events[0].user_id)
        for e in events:
            state.apply(e)
            if rng.random() < 0.3:
                offsets = [0, -rng.randint(1, 5 * DAY_MS), rng.randint(0, 3 * DAY_MS),
                           rng.randint(0, 120 * DAY_MS), 7 * DAY_MS]
                times = [max(0, state.last_ts + o) for o in offsets]
                ltv = rng.choice([0.0, 150.0, 1e-300])
                rows = churn_feature_rows(state, times, ltv)
                for t, row in zip(times, rows, strict=True):
                    ref = _reference_features(state, t, ltv)
                    assert list(row) == list(FEATURE_NAMES)
                    assert row == ref and all(type(v) is float for v in row.values())
                    assert churn_features(state, t, ltv) == ref
                    checked += 1
    assert checked > 500


def test_churn_features_replace_non_finite_values_by_zero():
    state = UserState("u1", first_ts=T0, last_ts=T0, views=1, sessions=1, watch_s=float("inf"))
    x = churn_features(state, T0 + DAY_MS)
    assert x["watch_per_session"] == 0.0 and all(math.isfinite(v) for v in x.values())
    assert x == _reference_features(state, T0 + DAY_MS)


@pytest.mark.parametrize("horizon", [0.5, 1, 7, 10, 13.9, 14, 30])
def test_any_positive_horizon_builds_models_that_learn(horizon):
    """`coursepulse eval --horizon-days H` crashed for H <= 10 (ages reached the horizon) and for
    H <= 1 (one snapshot per day was not below the horizon): defaults now scale with H."""
    from models.churn import DEFAULT_AGES_DAYS, ChurnModel, default_ages
    from models.retention import RetentionModels

    ages = default_ages(horizon)
    assert ages[0] == 0 and ages[-1] < horizon and len(ages) == len(DEFAULT_AGES_DAYS)
    assert list(ages) == sorted(set(ages))
    model = ChurnModel(horizon_days=horizon)
    assert model.min_interval_days < horizon
    rm = RetentionModels(horizon_days=horizon, first_check_days=min(3.0, horizon / 2))
    assert rm.churn.ages_days == ages
    with pytest.raises(ValueError, match="horizon_days"):
        default_ages(0)
