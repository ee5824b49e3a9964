"""Silence checks without scans, and alert hysteresis / cool-down, alone and with a trained model."""

from __future__ import annotations

import json
import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
from test_churn import T0, busy_state, synthetic, train

from models.alerts import AlertPolicy, SilenceScheduler
from models.churn import ChurnModel, churn_features
from models.profile import DAY_MS, UserState
from schemas.events import Purchase, View

H = 3_600_000


# ---------------------------------------------------------------------------------------------
# the scheduler


def test_touch_schedules_the_first_check_and_due_pops_it_once():
    s = SilenceScheduler(first_check_days=3)
    s.touch("a", T0)
    s.touch("b", T0 + DAY_MS)
    assert len(s) == 2 and s.scheduled_at("a") == T0 + 3 * DAY_MS
    s.touch("a", T0 + 2 * DAY_MS)  # active again: the check moves
    assert s.scheduled_at("a") == T0 + 5 * DAY_MS
    s.touch("a", T0 + DAY_MS)  # a late event changes nothing
    assert s.scheduled_at("a") == T0 + 5 * DAY_MS
    assert s.due(T0 + 4 * DAY_MS) == ["b"]
    assert s.due(T0 + 4 * DAY_MS) == [] and len(s) == 1
    s.reschedule("b", T0 + 6 * DAY_MS)
    assert s.due(T0 + 10 * DAY_MS) == ["a", "b"]
    assert len(s) == 0
    s.touch("b", T0 + DAY_MS)  # not newer than what b was touched with
    assert s.scheduled_at("b") is None
    s.reschedule("a", T0 + 11 * DAY_MS)
    s.forget("a")
    assert len(s) == 0 and s.due(T0 + 20 * DAY_MS) == []


def test_due_pops_only_due_entries_never_the_whole_population():
    rng = random.Random(0)
    s = SilenceScheduler()
    n = 100_000
    last = {f"u{i}": T0 + rng.randint(0, 30 * DAY_MS) for i in range(n)}
    for u, t in last.items():
        s.touch(u, t)
    watermark = T0 + 3 * DAY_MS + DAY_MS // 10  # checks of the first 2.4 hours of activity
    expected = sorted((t, u) for u, t in last.items() if t + 3 * DAY_MS <= watermark)
    got = s.due(watermark)
    assert got == [u for _, u in expected]
    assert 0 < s.pops == len(expected) < n // 50  # one pop per due user: no scan
    # users active again leave stale entries behind: each costs at most one pop, once
    for u in list(last)[:1000]:
        s.touch(u, last[u] + DAY_MS)
    before = s.pops
    second = s.due(T0 + 3 * DAY_MS + DAY_MS // 5)
    assert s.pops - before <= len(second) + 1000
    assert len(s._heap) <= 2 * len(s) + 1024 + 1  # compacted, bounded


def test_scheduler_checkpoint_round_trip():
    s = SilenceScheduler(first_check_days=2)
    for i in range(50):
        s.touch(f"u{i}", T0 + i * H)
    s.due(T0 + 2 * DAY_MS + 10 * H)
    back = SilenceScheduler.from_dict(json.loads(json.dumps(s.to_dict())))
    assert len(back) == len(s)
    for u in ("u3", "u30"):
        back.touch(u, T0 + 5 * DAY_MS)
        s.touch(u, T0 + 5 * DAY_MS)
    assert back.due(T0 + 9 * DAY_MS) == s.due(T0 + 9 * DAY_MS)


# ---------------------------------------------------------------------------------------------
# the policy


def test_hysteresis_one_alert_per_episode_then_release():
    p = AlertPolicy(threshold=0.6, release=0.4, cooldown_days=0)
    risks = [0.3, 0.65, 0.7, 0.55, 0.62, 0.45, 0.61, 0.39, 0.5, 0.61]
    sent = [p.decide("u", r, T0 + i * DAY_MS) for i, r in enumerate(risks)]
    assert sent == [False, True, False, False, False, False, False, False, False, True]


def test_cooldown_and_return_close_the_episode():
    p = AlertPolicy(cooldown_days=7)
    assert p.decide("u", 0.9, T0)
    p.on_activity("u", T0 - H)  # activity before the alert: still open
    assert p.is_open("u")
    p.on_activity("u", T0 + DAY_MS)  # came back
    assert not p.is_open("u")
    assert not p.decide("u", 0.9, T0 + 3 * DAY_MS)  # silent again, but cooling down
    assert p.decide("u", 0.9, T0 + 7 * DAY_MS)  # cool-down over: a new episode
    assert not p.decide("u", 0.95, T0 + 30 * DAY_MS)  # still open: no repeat


def test_policy_state_is_bounded_and_checkpointable():
    p = AlertPolicy(cooldown_days=1)
    for i in range(100):
        p.decide(f"u{i}", 0.9 if i % 2 else 0.1, T0)
    assert len(p) == 50  # only users with an episode are kept
    for i in range(1, 100, 4):
        p.on_activity(f"u{i}", T0 + H)
    back = AlertPolicy.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back.to_dict() == p.to_dict()
    assert [back.decide(f"u{i}", 0.9, T0 + 2 * DAY_MS) for i in range(8)] == \
           [p.decide(f"u{i}", 0.9, T0 + 2 * DAY_MS) for i in range(8)]
    assert p.prune(T0 + 10 * DAY_MS) > 0
    assert all(p.is_open(u) for u in p._users)
    p.forget("u3")
    assert not p.is_open("u3")


def test_suggested_actions_follow_segment_and_progress():
    p = AlertPolicy(discount_pct=25)
    x = churn_features(busy_state(), busy_state().last_ts + 30 * DAY_MS)
    f = [{"name": "days_since_purchase", "value": 30.0, "contribution": 0.8}]
    assert p.suggest_action(x, f, "dormant", "Python 101") == "win-back offer: 25% off Python 101"
    assert p.suggest_action(x, f, "at-risk", "Python 101") == "remind to continue Python 101"
    assert "subscription" in p.suggest_action(x, f, "at-risk", category="data")
    x = {**x, "has_plan": 0.0}
    assert p.suggest_action(x, f, "at-risk", category="data").startswith("win-back offer: 25% off")
    x = {**x, "purchases_log": 0.0}
    assert p.suggest_action(x, [], "at-risk", category="data") == "check in: new courses in data"
    assert p.suggest_action(x, [], "at-risk") == "check in: popular courses this week"


# ---------------------------------------------------------------------------------------------
# the whole loop: a user goes silent while others keep the watermark moving


def view(uid: str, i: int, ts: int) -> View:
    return View(event_id=f"{uid}-{i}", user_id=uid, ts=ts, schema_version=1, course_id=f"c{i % 4}",
                lesson_id="l", watch_seconds=1500.0, progress=min(1.0, 0.05 * (i % 20)))


def platform(target_days: list[tuple[float, float]], days: int = 70) -> list[View]:
    """Ten users active every ~5 hours (they move the watermark) and a target ``s`` active
    daily within each ``(start, end)`` day range and silent elsewhere."""
    rng = random.Random(4)
    events = []
    for k in range(10):
        t, i = T0 + k * H, 0
        while t < T0 + days * DAY_MS:
            events.append(view(f"o{k}", i, t))
            t += rng.randint(3 * H, 7 * H)
            i += 1
    i = 0
    for start, end in target_days:
        d = start
        while d < end:
            events.append(view("s", i, T0 + int(d * DAY_MS) + 10 * H))
            d += 1
            i += 1
    return sorted(events, key=lambda e: e.ts)


def run_loop(events: list[Any], risk: Callable[[UserState, int], float],
             model: ChurnModel | None = None, policy: AlertPolicy | None = None) -> tuple[list[tuple[str, int]], AlertPolicy, list[Any]]:
    """The agent's loop: touch/observe on events; on watermark moves, check the due users."""
    scheduler, policy = SilenceScheduler(first_check_days=3), policy or AlertPolicy()
    states: dict[str, UserState] = {}
    alerts: list[tuple[str, int]] = []
    closes: list[Any] = []
    watermark = 0
    for e in events:
        state = states.setdefault(e.user_id, UserState(e.user_id))
        state.apply(e)
        scheduler.touch(e.user_id, state.last_ts)
        was_open = policy.is_open(e.user_id)
        policy.on_activity(e.user_id, e.ts)
        if was_open and not policy.is_open(e.user_id):
            closes.append((e.user_id, e.ts))
        if model is not None:
            model.observe(state, e.ts, is_purchase=isinstance(e, Purchase))
        if e.ts <= watermark:
            continue
        watermark = e.ts
        if model is not None:
            model.advance(watermark)
        for u in scheduler.due(watermark):
            s = states[u]
            if policy.decide(u, risk(s, watermark), watermark):
                alerts.append((u, watermark))
            if watermark - s.last_ts < 45 * DAY_MS:
                scheduler.reschedule(u, watermark + DAY_MS // 2)
    return alerts, policy, closes


def days_inactive_risk(state: UserState, now: int) -> float:
    return 1.0 - math.exp(-(now - state.last_ts) / DAY_MS / 7.0)


def check_two_episodes(alerts: list[tuple[str, int]], closes: list[Any]) -> None:
    mine = [t for u, t in alerts if u == "s"]
    assert len(mine) == 2, mine
    first, second = mine
    assert T0 + 13 * DAY_MS <= first < T0 + 30 * DAY_MS  # in the first silence, after it began
    assert T0 + 36 * DAY_MS <= second  # in the second silence
    assert [u for u, _ in closes] == ["s"] and first < closes[0][1] < second  # the return closed it


def test_silent_user_alerted_once_per_silence_with_a_rule_risk():
    events = platform([(0, 10), (33, 36)])
    alerts, policy, closes = run_loop(events, days_inactive_risk)
    assert {u for u, _ in alerts} == {"s"}  # the busy users never go quiet long enough
    check_two_episodes(alerts, closes)
    assert policy.is_open("s")


def test_risk_hovering_at_the_threshold_alerts_once():
    events = platform([(0, 10)], days=40)
    fed: list[float] = []

    def wobble(state: UserState, now: int) -> float:  # between release and 1, crossing 0.6
        if state.user_id != "s":
            return 0.0
        fed.append((0.5, 0.7, 0.58, 0.75)[len(fed) % 4])
        return fed[-1]

    alerts, _, _ = run_loop(events, wobble)
    crossings = sum(1 for a, b in zip(fed, fed[1:], strict=False) if a < 0.6 <= b)
    assert crossings >= 5 and min(fed) > 0.4
    assert [u for u, _ in alerts] == ["s"]


def test_silent_user_alerted_once_per_silence_with_a_trained_churn_model():
    model = ChurnModel()
    train(model, synthetic(150, seed=1))
    events = platform([(0, 10), (33, 36)])
    alerts, _, closes = run_loop(events, model.risk, model=model)
    check_two_episodes(alerts, closes)
    assert model.n_learned > 0 and all(u == "s" for u, _ in alerts)


@pytest.mark.parametrize("obj", [SilenceScheduler(), AlertPolicy()])
def test_pickle_keeps_state(obj: Any):
    obj2 = pickle.loads(pickle.dumps(obj))
    assert obj2.to_dict() == obj.to_dict()
