"""RetentionModels: the bundle the live agent and replay share; silence alerts; checkpoints."""

from __future__ import annotations

import pickle
import random

import pytest

from models.profile import DAY_MS, UserState
from models.retention import RetentionModels
from schemas.events import View

T0 = 1_767_225_600_000
H = 3_600_000


def _view(uid: str, n: int, ts: int, watch: float = 900.0) -> View:
    return View(event_id=f"{uid}-{n}", user_id=uid, ts=ts, schema_version=1, course_id="c1", lesson_id="l",
                watch_seconds=watch, progress=0.3)


def _train(rm: RetentionModels, states: dict[str, UserState], days: int = 60, seed: int = 1) -> int:
    """Regular users keep coming daily; 'leavers' slow down and stop after 20 days."""
    rng = random.Random(seed)
    n = 0
    for day in range(days):
        for u in range(40):
            uid = f"u{u}"
            leaver = u % 4 == 0
            if leaver and (day > 20 or rng.random() < day / 25):
                continue
            if rng.random() < 0.8:
                ts = T0 + day * DAY_MS + rng.randrange(0, 8 * H)
                state = states.setdefault(uid, UserState(uid))
                state.apply(_view(uid, n, ts, watch=900 if not leaver else 900 * (1 - day / 25)))
                rm.observe(state, ts, False)
                n += 1
        rm.on_watermark(T0 + (day + 1) * DAY_MS, states.get)
    return n


def _others_come(rm: RetentionModels, states: dict[str, UserState], ts: int) -> None:
    """The regular users of ``_train`` come at ``ts``: the platform is not quiet."""
    for u in (u for u in range(40) if u % 4):  # every user but the leavers
        uid = f"u{u}"
        state = states.setdefault(uid, UserState(uid))
        state.apply(_view(uid, ts, ts))
        rm.observe(state, ts, False)


def test_a_silent_user_gets_one_alert_per_episode_while_others_move_the_watermark():
    rm = RetentionModels(threshold=0.5, release=0.3, cooldown_days=2)
    states: dict[str, UserState] = {}
    _train(rm, states)
    silent = UserState("quiet")
    t = T0 + 61 * DAY_MS
    silent.apply(_view("quiet", 0, t))
    rm.observe(silent, t, False)
    states["quiet"] = silent
    alerts = []
    for day in range(1, 15):  # others keep the watermark moving; the quiet user sends nothing
        _others_come(rm, states, t + day * DAY_MS - H)
        alerts += [a for a in rm.on_watermark(t + day * DAY_MS, states.get) if a.user_id == "quiet"]
    assert len(alerts) == 1
    first = alerts[0]
    assert first.days_inactive >= 3 and first.risk >= first.threshold and first.factors and first.action
    # the user comes back: the episode closes; silent again: a new alert
    back = t + 15 * DAY_MS
    silent.apply(_view("quiet", 1, back))
    rm.observe(silent, back, False)
    assert not rm.policy.is_open("quiet")
    again = []
    for day in range(1, 15):
        _others_come(rm, states, back + day * DAY_MS - H)
        again += [a for a in rm.on_watermark(back + day * DAY_MS, states.get) if a.user_id == "quiet"]
    assert len(again) == 1 and again[0].at > back


def test_checkpoint_restores_the_same_predictions():
    rm = RetentionModels()
    states: dict[str, UserState] = {}
    _train(rm, states, days=30)
    restored = RetentionModels.restore(rm.checkpoint())
    now = T0 + 31 * DAY_MS
    for state in states.values():
        assert restored.churn.risk(state, now) == pytest.approx(rm.churn.risk(state, now), abs=1e-12)
        assert restored.extras(state, now) == rm.extras(state, now)
    assert restored.reschedule_all(states.values()) > 0
    assert pickle.loads(pickle.dumps(restored)).checkpoint() == restored.checkpoint()


def test_restore_takes_every_parameter_from_the_current_settings():
    """A changed COURSEPULSE_CHURN_THRESHOLD (or release, cool-down, first check) applies to a
    partition that has a checkpoint; a changed horizon relearns; bad or old blobs never crash."""
    rm = RetentionModels()
    states: dict[str, UserState] = {}
    _train(rm, states, days=30)
    blob = rm.checkpoint()
    changed = RetentionModels.restore(blob, threshold=0.8, release=0.7, cooldown_days=2.0, first_check_days=1.0)
    assert (changed.policy.threshold, changed.policy.release, changed.policy.cooldown_days) == (0.8, 0.7, 2.0)
    assert changed.scheduler.first_check_days == 1.0 and changed.threshold == 0.8
    now = T0 + 31 * DAY_MS
    state = next(iter(states.values()))
    assert changed.churn.risk(state, now) == pytest.approx(rm.churn.risk(state, now), abs=1e-12)
    relearn = RetentionModels(horizon_days=21)
    assert relearn.restore_learned(blob) == "relearning"
    assert relearn.churn.n_learned == 0 and relearn.watermark == rm.watermark
    assert RetentionModels().restore_learned(b"\x80garbage") == "rebuilt"
    old = pickle.dumps({  # format 1 stored the constructor arguments beside the learned state
        "args": (14.0, 0.5, 0.4, 7.0, 3.0, 1.0, rm.rules, 0), "churn": rm.churn.classifier,
        "repurchase": rm.repurchase.classifier, "clusters": rm.clusters, "policy": rm.policy.to_dict(),
        "watermark": rm.watermark})
    migrated = RetentionModels(threshold=0.9, release=0.8)
    assert migrated.restore_learned(old) == "migrated" and migrated.policy.threshold == 0.9
    assert migrated.churn.risk(state, now) == pytest.approx(rm.churn.risk(state, now), abs=1e-12)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="recheck_days"):
        RetentionModels(recheck_days=0)
    with pytest.raises(ValueError, match="release"):
        RetentionModels(threshold=0.5, release=0.6)


def test_a_silence_the_whole_platform_shares_is_not_alerted():
    """The end of a file, a term's end: everybody stops at once, so nobody is singled out."""
    def run(others_continue: bool) -> int:
        rm = RetentionModels(threshold=0.5, release=0.3, cooldown_days=2)
        states: dict[str, UserState] = {}
        _train(rm, states)
        quiet = UserState("quiet")
        t = T0 + 61 * DAY_MS
        quiet.apply(_view("quiet", 0, t))
        rm.observe(quiet, t, False)
        states["quiet"] = quiet
        n = 0
        for day in range(1, 20):
            if others_continue:
                _others_come(rm, states, t + day * DAY_MS - H)
            n += sum(a.user_id == "quiet" for a in rm.on_watermark(t + day * DAY_MS, states.get))
        return n

    assert run(others_continue=True) == 1
    assert run(others_continue=False) == 0


def test_alerts_per_day_stay_within_the_budget_riskiest_first():
    rm = RetentionModels(threshold=0.01, release=0.005, cooldown_days=30, alert_share=0.1)
    states: dict[str, UserState] = {}
    _train(rm, states, days=40)
    # every leaver (u0, u4, ... 10 users) is silent, the others come daily: 40 scheduled users,
    # so at most 4 alerts a day
    per_day = []
    for day in range(1, 10):
        now = T0 + (40 + day) * DAY_MS
        _others_come(rm, states, now - H)
        per_day.append(len(rm.on_watermark(now, states.get)))
    assert max(per_day) <= max(1, int(0.1 * len(rm.scheduler))) and sum(per_day) > 0
