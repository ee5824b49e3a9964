"""The evaluator on tiny hand-built streams whose metrics can be worked out by hand."""

from __future__ import annotations

import random

import pytest

from models.evaluation import (
    EvalConfig,
    LabelFeed,
    PrequentialEvaluator,
    average_precision,
    roc_auc,
)
from models.evaluation.metrics import ndcg_at
from models.profile import DAY_MS, UserState
from models.recommend import OnlineRecommender
from models.step import StepConfig
from schemas.events import Course, View

T0 = 1_767_225_600_000
H = 3_600_000


def _catalogue(n: int) -> list[Course]:
    return [Course(course_id=f"c{i}", title=f"C{i}", category=f"k{i % 4}", price=1.0, published_at=T0 - DAY_MS)
            for i in range(n)]


def _stream(n_courses: int = 50, users: int = 40, per_user: int = 6, seed: int = 0) -> list:
    rng = random.Random(seed)
    events = []
    for u in range(users):
        for j, c in enumerate(rng.sample(range(n_courses), per_user)):
            events.append(View(event_id=f"u{u}-{j}", user_id=f"u{u}", ts=T0 + (u * per_user + j) * 2 * H,
                               schema_version=1, course_id=f"c{c}", lesson_id="l", watch_seconds=60.0, progress=0.5))
    return [*_catalogue(n_courses), *sorted(events, key=lambda e: e.ts)]


class Oracle(OnlineRecommender):
    """Knows each user's next discovery: a perfect recommender."""

    def __init__(self, events: list) -> None:
        super().__init__()
        self.future = {}
        for e in reversed(events):
            if isinstance(e, View):
                self.future.setdefault(e.user_id, []).insert(0, e.course_id)

    def recommend(self, state: UserState, now: int) -> list[tuple[str, float, str]]:
        upcoming = [c for c in self.future[state.user_id] if c not in state.courses]
        return [(c, 1.0, "oracle") for c in upcoming[:10]]


class Random(OnlineRecommender):
    def __init__(self, n_courses: int, seed: int = 1) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.n = n_courses

    def recommend(self, state: UserState, now: int) -> list[tuple[str, float, str]]:
        pool = [f"c{i}" for i in range(self.n) if f"c{i}" not in state.courses]
        return [(c, 1.0, "random") for c in self.rng.sample(pool, 10)]


def test_perfect_recommender_scores_one():
    events = _stream()
    report = PrequentialEvaluator(EvalConfig(rec_interval_ms=0), recommender=Oracle(events)).run(events)
    assert report["recs"]["discoveries"] == 40 * 5  # every view after a user's first
    assert report["recs"]["hr@10"] == 1.0 and report["recs"]["ndcg@10"] == 1.0


def test_random_recommender_scores_about_k_over_catalogue():
    n = 200
    events = _stream(n_courses=n, users=300, per_user=8)
    report = PrequentialEvaluator(EvalConfig(rec_interval_ms=0), recommender=Random(n)).run(events)
    assert report["recs"]["hr@10"] == pytest.approx(10 / n, abs=0.02)


def test_truth_as_risk_scores_auc_one_and_a_constant_scores_half():
    events = _stream(users=30)
    # users 0..14 churn (their last event is their churn time); the others never do
    last = {}
    for e in events:
        if isinstance(e, View):
            last[e.user_id] = e.ts
    labels = {u: (t if int(u[1:]) < 15 else None) for u, t in last.items()}
    horizon = 14 * DAY_MS

    def truth(user: str, state: UserState, t: int) -> float:
        c = labels[user]
        return float(c is not None and c <= t + horizon)

    perfect = PrequentialEvaluator(EvalConfig(), labels=labels, scorer=truth).run(events)
    assert perfect["churn"]["roc_auc"] == 1.0 and perfect["churn"]["pr_auc"] == 1.0
    constant = PrequentialEvaluator(EvalConfig(), labels=labels, scorer=lambda *_: 0.3).run(events)
    assert constant["churn"]["roc_auc"] == 0.5


def test_labels_are_never_visible_before_their_time():
    feed = LabelFeed({"u1": T0 + 10 * DAY_MS, "u2": None})
    for day in range(10):
        feed.advance(T0 + day * DAY_MS)
        assert feed.churned_at("u1") is None and feed.churned_at("u2") is None
    feed.advance(T0 + 10 * DAY_MS)
    assert feed.churned_at("u1") == T0 + 10 * DAY_MS
    feed.advance(T0)  # the clock never goes back
    assert feed.churned_at("u1") == T0 + 10 * DAY_MS


def test_the_model_learns_a_label_only_after_it_is_known():
    events = _stream(users=30)
    last = {e.user_id: e.ts for e in events if isinstance(e, View)}
    labels = {u: (t if int(u[1:]) % 2 else None) for u, t in last.items()}
    horizon = 14 * DAY_MS
    released: list[tuple[int, int, str, int]] = []

    class Spy(PrequentialEvaluator):
        def _learn_resolved(self, clock: int) -> None:
            released.extend((clock, y, user, t) for known, y, user, t, _ in self._pending_labels if known <= clock)
            super()._learn_resolved(clock)

    Spy(EvalConfig(), labels=labels).run(events)
    assert released
    for clock, y, user, t in released:
        churned = labels[user]
        if y:  # a churn is learned only once it happened
            assert churned is not None and churned <= t + horizon and clock >= churned
        else:  # "did not churn within H" is learned only once H has passed
            assert clock >= t + horizon


def test_metrics_by_hand():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert ndcg_at(0) == 1.0 and ndcg_at(1) == pytest.approx(1 / 1.5849625) and ndcg_at(None) == 0.0


def test_same_file_same_numbers():
    events = _stream()
    a = PrequentialEvaluator(EvalConfig()).run(events)
    b = PrequentialEvaluator(EvalConfig()).run(events)
    for r in (a, b):
        r.pop("events_per_s"), r.pop("elapsed_s")
    assert a == b


def test_both_label_classes_are_learned_at_the_same_delay():
    """A churn used to be learned as soon as it happened and a stay only H later: the model saw
    fresh positives and stale negatives, and its risks drifted with the delay."""
    events = _stream(users=30)
    last = {e.user_id: e.ts for e in events if isinstance(e, View)}
    labels = {u: (t if int(u[1:]) % 2 else None) for u, t in last.items()}
    horizon = 14 * DAY_MS
    released: list[tuple[int, int, int]] = []

    class Spy(PrequentialEvaluator):
        def _learn_resolved(self, clock: int) -> None:
            released.extend((clock, y, t) for known, y, _, t, _ in self._pending_labels if known <= clock)
            super()._learn_resolved(clock)

    Spy(EvalConfig(), labels=labels).run(events)
    positives = [(clock, t) for clock, y, t in released if y]
    assert positives and all(clock >= t + horizon for clock, t in positives)


def test_lists_left_unpublished_because_unchanged_change_no_metric():
    """Eval publishes as the worker does (only changed lists); the list in effect is the same
    either way, so every recommendation figure is the one of publishing every list ranked."""
    rng = random.Random(5)
    events = []
    for u in range(30):
        t = T0 + u * 7 * H
        for j, c in enumerate(rng.sample(range(30), 3)):
            for k in range(3):  # the same course watched again: mostly the same list after it
                t += H
                events.append(View(event_id=f"u{u}-{j}-{k}", user_id=f"u{u}", ts=t, schema_version=1,
                                   course_id=f"c{c}", lesson_id="l", watch_seconds=60.0, progress=0.3 * (k + 1)))
    stream = [*_catalogue(30), *sorted(events, key=lambda e: e.ts)]
    every = PrequentialEvaluator(EvalConfig(step=StepConfig(republish_ms=0))).run(stream)
    changed = PrequentialEvaluator(EvalConfig()).run(stream)
    a, b = every["recs"], changed["recs"]
    assert a["lists_ranked"] == b["lists_ranked"] == a["lists_published"] > b["lists_published"] > 0
    for r in (a, b):
        del r["lists_published"], r["lists_per_event"]
    assert a == b and a["discoveries"] > 0
