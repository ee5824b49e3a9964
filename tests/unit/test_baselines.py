"""The churn baselines every report carries: recency-only risk and alert lift."""

from __future__ import annotations

import pytest

from models.evaluation import EvalConfig, PrequentialEvaluator
from models.evaluation.baselines import alert_lift, recency_baseline
from models.profile import DAY_MS
from schemas.events import View

T0 = 1_767_225_600_000


def test_recency_scores_the_snapshots_it_is_given():
    snaps = [("a", 0, 0.0), ("b", 0, 0.0), ("c", 0, 0.0), ("d", 0, 0.0)]
    churned = {"a", "c"}
    r = recency_baseline(snaps, [9.0, 1.0, 4.0, 2.0], lambda u, t: u in churned)
    assert r["roc_auc"] == 1.0 and r["pr_auc"] == 1.0
    r = recency_baseline(snaps, [0.0, 9.0, 1.0, 4.0], lambda u, t: u in churned)
    assert r["roc_auc"] == 0.0
    with pytest.raises(ValueError, match="one recency per snapshot"):
        recency_baseline(snaps, [1.0], lambda u, t: True)


def test_unknown_labels_are_left_out():
    snaps = [("a", 0, 0.0), ("b", 0, 0.0), ("x", 0, 0.0)]
    r = recency_baseline(snaps, [3.0, 1.0, 0.0], lambda u, t: None if u == "x" else u == "a")
    assert r["roc_auc"] == 1.0


def test_alerting_everyone_has_lift_one_and_alerting_churners_has_more():
    users = [f"u{i}" for i in range(10)]
    churned = set(users[:3])

    def label(u: str, t: int) -> bool:
        return u in churned

    snaps = [(u, d * DAY_MS, 0.0) for d in range(3) for u in users]
    everyone = alert_lift([(u, 0, 0.9) for u in users], snaps, label)
    assert everyone["alert_precision"] == pytest.approx(0.3)
    assert everyone["base_rate"] == pytest.approx(0.3)
    assert everyone["alert_lift"] == pytest.approx(1.0)
    sharp = alert_lift([(u, DAY_MS, 0.9) for u in users[:2]], snaps, label)
    assert sharp["alert_lift"] == pytest.approx(1 / 0.3, rel=1e-3)
    assert sharp["alerts_per_active_user_day"] == pytest.approx(2 / 30, abs=1e-5)


def test_the_base_rate_is_that_of_the_alert_days():
    # day 0: 1 churner in 2 users; day 5: 1 in 4. An alert on each day, both right.
    snaps = [("a", 0, 0.0), ("b", 0, 0.0)] + [(u, 5 * DAY_MS, 0.0) for u in "cdef"]
    r = alert_lift([("a", 0, 1.0), ("c", 5 * DAY_MS + 10, 1.0)], snaps, lambda u, t: u in "ac")
    assert r["base_rate"] == pytest.approx((0.5 + 0.25) / 2)
    assert r["alert_lift"] == pytest.approx(1 / 0.375, rel=1e-3)


def test_every_report_carries_the_baselines():
    # users come daily; the even ones stop after day 3 (churners), the odd ones go on to day 40
    events = []
    for u in range(12):
        last_day = 3 if u % 2 == 0 else 40
        for d in range(last_day + 1):
            events.append(View(event_id=f"u{u}-{d}", user_id=f"u{u}", ts=T0 + d * DAY_MS + u * 1000,
                               schema_version=1, course_id="c1", lesson_id="l", watch_seconds=60.0, progress=0.5))
    events.sort(key=lambda e: e.ts)
    labels = {f"u{u}": (T0 + 3 * DAY_MS + u * 1000 if u % 2 == 0 else None) for u in range(12)}
    report = PrequentialEvaluator(EvalConfig(), labels=labels).run(events)
    churn = report["churn"]
    assert set(churn["baseline"]) == {"name", "roc_auc", "pr_auc"}
    # silence separates the two groups once the churners have stopped: recency ranks well
    assert churn["baseline"]["roc_auc"] > 0.6
    assert "alert_lift" in churn and churn["alerts_per_active_user"] is not None


def test_an_alert_that_only_says_quiet_has_no_lift_over_the_silent():
    # 10 users a day; 4 silent (recency >= 1 day), 2 of them churn; alerting every silent user
    users = [f"u{i}" for i in range(10)]
    recency = [3.0 if i < 4 else 0.0 for i in range(10)]
    churned = {"u0", "u1"}
    snaps = [(u, 0, 0.0) for u in users]
    r = alert_lift([(u, 0, 0.9) for u in users[:4]], snaps, lambda u, t: u in churned, recency_days=recency)
    assert r["alert_lift"] == pytest.approx(0.5 / 0.2)  # over everybody: looks good
    assert r["alert_lift_vs_silent"] == pytest.approx(1.0)  # over the quiet users: nothing learned
    r = alert_lift([("u0", 0, 0.9)], snaps, lambda u, t: u in churned, recency_days=recency)
    assert r["alert_lift_vs_silent"] == pytest.approx(2.0)
