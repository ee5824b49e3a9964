"""The fault suite's comparison on hand-made outcomes (no processes)."""

from __future__ import annotations

import copy

from models.profile import event_fingerprint
from tests.fault.harness import Outcome, compare, rec_id_for, users_differing

FP1, FP2, FP3 = (event_fingerprint(e) for e in ("e1", "e2", "e3"))


def _outcome() -> Outcome:
    state = {"user_id": "u1", "views": 2, "purchases": 1, "shares": 0, "spend": 9.5, "first_ts": 1,
             "last_ts": 3, "seen": FP1 + FP2 + FP3, "last_event_id": "e3", "owned": ["c1", "c2"], "watch_s": 0.1 + 0.2,
             "courses": {"c1": [1, 0.5, 10.0, 1]}, "partition": 2}
    profile = {"user_id": "u1", "views": 2, "purchases": 1, "shares": 0, "sessions": 1, "active_days": 1,
               "watch_hours": 0.0, "completed_courses": 0, "spend": 9.5, "first_ts": 1, "last_ts": 3,
               "recent_courses": ["c1"], "updated_at": 100, "recency_days": 1.0, "extra": {"churn_risk": 0.2}}
    rec = {"user_id": "u1", "event_id": "e3", "rec_id": rec_id_for("u1", "e3"), "items": [{"course_id": "c9"}]}
    return Outcome({"u1": state}, {"u1": profile}, {"u1": rec}, {"u1": dict(profile)}, {"u1": dict(rec)}, [], set())


EXPECTED = {"u1": {"views": 2, "purchases": 1, "shares": 0, "spend": 9.5, "first_ts": 1, "last_ts": 3}}


def test_equal_outcomes_and_timing_dependent_fields_do_not_count():
    a, b = _outcome(), _outcome()
    b.state["u1"]["seen"] = FP2 + FP1 + FP3  # arrival order across topics
    b.state["u1"]["owned"] = ["c2", "c1"]
    b.state["u1"]["watch_s"] = 0.3  # float sum in another order
    for p in (b.profiles["u1"], b.redis_profiles["u1"]):
        p.update(updated_at=200, recency_days=2.0, extra={"churn_risk": 0.7})  # watermark, models
    assert not users_differing(compare(b, a, EXPECTED))


def test_lost_state_stale_profile_wrong_trigger_and_missing_serving_copy_count():
    base = _outcome()
    for mutate, aspect in [
        (lambda o: o.state["u1"].update(views=1), "state"),
        (lambda o: o.profiles["u1"].update(last_ts=2), "profile"),
        (lambda o: o.recs["u1"].update(event_id="e2"), "list"),
        (lambda o: o.redis_recs.pop("u1"), "redis_list"),
        (lambda o: o.redis_profiles["u1"].update(views=1), "redis_profile"),
    ]:
        run = copy.deepcopy(base)
        mutate(run)
        diff = compare(run, base, EXPECTED)
        assert diff[aspect], aspect
    run = copy.deepcopy(base)
    run.state["u1"]["purchases"] = 2
    assert compare(run, base, EXPECTED)["counts"] == {"u1": ["purchases"]}
