"""Churn beyond recency: activity-log features, a model of bins and joint bins, labels learned at
the same delay for both classes, and a recency prior for a young model."""

from __future__ import annotations

import copy
import math
import random

import pytest

from models.activity import ACTIVITY_FEATURE_NAMES, activity_features
from models.churn import CHURN_FEATURE_NAMES, ChurnModel, OnlineClassifier, bin_indicators
from models.evaluation.metrics import roc_auc
from models.profile import DAY_MS, UserState
from schemas.events import View

T0 = 1_767_225_600_000 // DAY_MS * DAY_MS  # a UTC midnight (a Thursday)


def _view(user: str, ts: int, i: int) -> View:
    return View(event_id=f"{user}-{i}", user_id=user, ts=ts, schema_version=1, course_id="c1",
                lesson_id="l", watch_seconds=600.0, progress=min(0.99, 0.02 * i))


def _user(days: list[int], user: str = "u1") -> UserState:
    s = UserState(user)
    for i, d in enumerate(days):
        s.apply(_view(user, T0 + d * DAY_MS + 3_600_000, i))
    return s


def test_activity_features_count_windows_gaps_and_the_expected_missed_days():
    s = _user([0, 1, 2, 3, 4, 10, 20, 27])
    before = copy.deepcopy(s.to_dict())
    x = activity_features(s, T0 + 27 * DAY_MS + 7_200_000)
    assert s.to_dict() == before
    assert tuple(x) == ACTIVITY_FEATURE_NAMES and all(math.isfinite(v) for v in x.values())
    assert x["active_days_7"] == 1.0 and x["active_days_28"] == 8.0
    assert x["gap_max_days"] == 10.0 and x["silence_over_gap"] == 0.0
    later = activity_features(s, T0 + 47 * DAY_MS)
    assert later["silence_over_gap"] == pytest.approx(math.log1p(20 / 11))
    assert later["active_days_7"] == 0.0 and later["missed_expected"] > 0


def test_a_weekly_visitor_missed_less_than_a_daily_one_after_the_same_silence():
    weekly = _user(list(range(0, 56, 7)), "w")
    daily = _user(list(range(0, 56)), "d")
    at_w = weekly.last_ts + 5 * DAY_MS
    at_d = daily.last_ts + 5 * DAY_MS
    xw, xd = activity_features(weekly, at_w), activity_features(daily, at_d)
    assert xw["weekday_regularity"] == pytest.approx(1.0) and xd["weekday_regularity"] < 0.05
    assert xw["missed_expected"] == 0.0  # the weekly visit is not due yet
    assert xd["missed_expected"] == pytest.approx(5.0, abs=0.5)
    assert activity_features(UserState("nobody"), T0)["active_days_28"] == 0.0


def test_the_churn_model_sees_the_activity_features():
    s = _user([0, 1, 2])
    model = ChurnModel()
    x = model.features(s, s.last_ts + DAY_MS)
    assert tuple(x) == CHURN_FEATURE_NAMES and set(ACTIVITY_FEATURE_NAMES) <= set(x)
    assert {f["name"] for f in model.explain(s, s.last_ts, top=len(x))} == set(x)


def test_bins_and_joint_bins():
    b = bin_indicators({"recency_days": 0.0, "active_days_28": 20.0, "other": 3.0})
    assert b == {"recency_days#0": 1.0, "active_days_28#6": 1.0, "recency_days*active_days_28#0,6": 1.0}


def test_the_binned_model_learns_an_interaction_a_linear_one_cannot():
    # churn = long silence of a frequent visitor, or activity of a rare one (an XOR of the two)
    rng = random.Random(3)

    def example():
        rec = rng.uniform(0, 14)
        act = rng.uniform(0, 21)
        y = (rec >= 7) != (act < 10.5)
        return {"recency_days": rec, "active_days_28": act}, y

    scores = {}
    for model in ("logreg", "binned"):
        clf = OnlineClassifier(lr=0.05, model=model)
        for _ in range(6000):
            clf.learn(*example())
        test = [example() for _ in range(2000)]
        scores[model] = roc_auc([y for _, y in test], [clf.predict_proba(x) for x, _ in test])
    assert scores["logreg"] < 0.65 and scores["binned"] > 0.9, scores


def test_contributions_of_the_binned_model_add_up_to_its_logit():
    clf = OnlineClassifier(lr=0.05, model="binned")
    rng = random.Random(1)
    for _ in range(300):
        r = rng.uniform(0, 20)
        clf.learn({"recency_days": r, "active_days_28": rng.uniform(0, 28)}, r > 7)
    x = {"recency_days": 9.0, "active_days_28": 3.0}
    p = clf.predict_proba(x)
    total = clf.intercept + sum(c for _, _, c in clf.contributions(x))
    assert total == pytest.approx(math.log(p / (1 - p)), abs=1e-9)


def test_a_young_classifier_ranks_by_its_recency_prior():
    clf = OnlineClassifier(prior_examples=1000, prior_scale=14.0)
    risks = [clf.predict_proba({"recency_days": d}) for d in (0.0, 1.0, 5.0, 20.0)]
    assert risks == sorted(risks) and risks[0] == 0.0 and risks[-1] > 0.7
    plain = OnlineClassifier()
    assert {plain.predict_proba({"recency_days": d}) for d in (0.0, 20.0)} == {0.5}
    with pytest.raises(ValueError, match="prior_examples"):
        OnlineClassifier(prior_examples=-1)


def test_a_return_is_learned_only_when_a_churn_of_the_same_snapshot_would_be():
    """Returns resolve within days, churns only at t0 + H: learning returns at once gave the
    model recent negatives and H-day-old positives, and its risks drifted with the delay."""
    model = ChurnModel(horizon_days=14.0)
    s = _user([0])
    model.observe(s, s.last_ts)
    s.apply(_view("u1", s.last_ts + 2 * DAY_MS, 99))
    assert model.observe(s, s.last_ts) == 0  # the return resolved the snapshot, but it waits
    assert model.n_learned == 0
    assert model.advance(T0 + 13 * DAY_MS) == 0
    assert model.advance(T0 + 15 * DAY_MS) > 0 and model.n_learned > 0


def test_a_checkpoint_from_before_the_prior_still_predicts():
    import pickle

    old = OnlineClassifier()
    old.learn({"recency_days": 3.0}, True)
    for name in ("prior_examples", "prior_feature", "prior_scale"):
        del old.__dict__[name]
    restored = pickle.loads(pickle.dumps(old))
    assert restored.prior_examples == 0
    assert 0.0 < restored.predict_proba({"recency_days": 3.0}) < 1.0
