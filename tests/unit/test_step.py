"""The one step (models/step.py) on hand-built batches: what it folds and what it says is owed."""

from __future__ import annotations

import ast
from pathlib import Path

from models.profile import DAY_MS as DAY
from models.profile import PartitionStats, UserState
from models.referrals import ReferralModels
from models.retention import RetentionModels
from models.step import (
    COUNTERS,
    PartitionModels,
    RecTrigger,
    StepConfig,
    list_due,
    list_signature,
    step,
)
from schemas.events import Purchase, Share, View

T0 = 1_767_225_600_000
CFG = StepConfig()


def _models(partition: int = 3) -> PartitionModels:
    return PartitionModels(partition, PartitionStats(), RetentionModels(), ReferralModels())


def _view(eid: str, user: str = "u1", ts: int = T0, course: str = "c1", progress: float = 0.5) -> View:
    return View(event_id=eid, user_id=user, ts=ts, schema_version=1, course_id=course, lesson_id="l",
                watch_seconds=60.0, progress=progress)


def _buy(eid: str, user: str = "u1", ts: int = T0, course: str = "c2", share_id: str | None = None) -> Purchase:
    return Purchase(event_id=eid, user_id=user, ts=ts, schema_version=1, amount=10.0, currency="CNY",
                    order_id=f"o-{eid}", course_id=course, share_id=share_id)


def _share(eid: str, user: str = "u1", ts: int = T0, course: str = "c1") -> Share:
    return Share(event_id=eid, user_id=user, ts=ts, schema_version=1, course_id=course, channel="link",
                 share_id=f"sh-{eid}")


def test_folds_each_users_events_and_owes_a_list_for_the_latest():
    models = _models()
    result = step([_view("a", ts=T0), _view("b", user="u2", ts=T0 + 1), _buy("c", ts=T0 + 2)], {}, models, CFG)
    by_user = {o.user_id: o for o in result.users}
    assert set(by_user) == {"u1", "u2"} and result.applied == 3
    u1 = by_user["u1"]
    assert (u1.applied, u1.repeated, u1.write) == (2, False, True)
    assert (u1.state.views, u1.state.purchases, u1.state.partition) == (1, 1, 3)
    assert (u1.trigger.partition, u1.trigger.event_id, u1.trigger.ts) == (3, "c", T0 + 2)
    assert result.counts["events_in", "views"] == 2 and result.counts["events_in", "purchases"] == 1
    assert result.write_stats and result.watermark == models.stats.watermark(CFG.lateness_ms)
    assert {name for name, _ in result.counts} <= set(COUNTERS)
    assert models.persisted_max == T0 + 2


def test_states_passed_in_are_folded_in_place():
    state = UserState("u1")
    step([_view("a")], {"u1": state}, _models(), CFG)
    assert state.views == 1


def test_repeats_only_rewrite_the_state_and_reowe_the_list_of_the_latest_applied_event():
    models = _models()
    first = step([_view("a", ts=T0), _view("b", ts=T0 + 5)], {}, models, CFG).users[0].state
    again = step([_view("b", ts=T0 + 5), _view("a", ts=T0)], {"u1": first}, models, CFG)
    (o,) = again.users
    assert (o.applied, o.repeated, o.write) == (0, True, True)
    assert (o.trigger.event_id, o.trigger.ts) == ("b", T0 + 5)  # whatever order the redelivery came in
    assert again.counts["duplicates", "views"] == 2 and again.write_stats


def test_a_redelivery_mixed_with_new_events_owes_the_latest_applied():
    models = _models()
    state = step([_view("a", ts=T0)], {}, models, CFG).users[0].state
    (o,) = step([_view("b", ts=T0 + 9), _view("a", ts=T0)], {"u1": state}, models, CFG).users
    assert o.repeated and o.applied == 1 and o.trigger.event_id == "b"


def test_views_and_purchases_of_a_course_rise_shares_do_not():
    result = step([_view("a", course="c1"), _share("s", course="c9"), _buy("p", course="c2")], {}, _models(), CFG)
    assert result.rose == [("u1", "c1"), ("u1", "c2")]
    assert {u.course_id for u in result.rises.merged_updates(30 * 86_400_000)} == {"c1", "c2"}


def test_links_for_shares_and_referred_purchases():
    result = step([_share("s"), _buy("p", user="u2", share_id="sh-x"), _buy("q", user="u3")], {}, _models(), CFG)
    assert [(link["kind"], link["share_id"]) for link in result.links] == [("share", "sh-s"), ("conversion", "sh-x")]


def test_stats_are_owed_on_purchases_and_when_event_time_moved_a_minute():
    models = _models()
    assert step([_view("a", ts=T0)], {}, models, CFG).write_stats  # first move from 0
    assert not step([_view("b", ts=T0 + 30_000)], {}, models, CFG).write_stats
    assert step([_view("c", ts=T0 + 60_000)], {}, models, CFG).write_stats
    assert step([_buy("d", ts=T0 + 60_001)], {}, models, CFG).write_stats


def test_a_redelivery_reowes_the_candidate_its_events_decided():
    models = _models()
    state = step([_view("a", ts=T0)], {}, models, CFG).users[0].state
    state.referrals = {**state.referrals, "candidate_ts": T0}
    result = step([_view("a", ts=T0)], {"u1": state}, models, CFG)
    assert [(c.user_id, c.at) for c in result.candidates] == [("u1", T0)]
    assert result.counts["referral_candidates_reowed", ""] == 1


def test_a_user_whose_events_raise_is_reported_and_the_others_are_folded():
    class Broken:
        user_id = "bad"
        event_id = "x"
        ts = "not a time"

    result = step([Broken(), _view("a")], {}, _models(), CFG)
    assert [u for u, _ in result.failed] == ["bad"]
    assert [o.user_id for o in result.users] == ["u1"]


def test_silent_users_are_read_through_get_state_when_the_watermark_moves():
    models = _models()
    seen: list[str] = []

    def get_state(user_id: str) -> UserState | None:
        seen.append(user_id)
        return None

    step([_view("a", user="quiet", ts=T0)], {}, models, CFG, get_state=get_state)
    day = 86_400_000
    step([_view("b", ts=T0 + 30 * day)], {}, models, CFG, get_state=get_state)
    assert seen == ["quiet"]  # its silence check came due; read outside the batch


def test_the_step_imports_no_kafka_faust_or_redis():
    tree = ast.parse((Path(__file__).parents[2] / "models" / "step.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in names if m.split(".")[0] in ("faust", "aiokafka", "redis", "streams", "agents")}


# -- publishing a list only when it changed (models.step.list_due) ------------------------------

ITEMS = [("c7", 0.9, "because you watched c1"), ("c8", 0.5, "popular in k1")]


def _trigger(ts: int, event_id: str = "e") -> RecTrigger:
    return RecTrigger(3, event_id, ts)


def test_a_list_is_published_when_it_changed_aged_or_may_be_a_redelivery():
    cfg = StepConfig(republish_ms=DAY)
    s = UserState("u1")
    assert list_due(s, _trigger(T0), ITEMS, cfg)  # the first list
    assert (s.rec_sig, s.rec_at) == (list_signature(ITEMS), T0)
    # the same courses, order and reasons, other scores: not published, and nothing recorded
    rescored = [(c, sc / 2, r) for c, sc, r in ITEMS]
    assert not list_due(s, _trigger(T0 + 1), rescored, cfg) and s.rec_at == T0
    assert list_due(s, _trigger(T0 + 2), ITEMS[::-1], cfg)  # another order
    assert list_due(s, _trigger(T0 + 3), [ITEMS[1], (ITEMS[0][0], 0.9, "new in k0")], cfg)  # another reason
    same = [ITEMS[1], (ITEMS[0][0], 0.9, "new in k0")]
    assert not list_due(s, _trigger(T0 + 4), same, cfg)
    assert list_due(s, _trigger(T0 + 4), same, cfg, force=True)  # a repeat's batch: owed again
    assert not list_due(s, _trigger(T0 + 4 + DAY - 1), same, cfg)
    assert list_due(s, _trigger(T0 + 4 + DAY), same, cfg) and s.rec_at == T0 + 4 + DAY  # aged
    assert not list_due(s, _trigger(T0 - DAY), same, cfg)  # a late event does not age it


def test_a_list_that_could_not_be_ranked_makes_the_next_one_published():
    cfg = StepConfig(republish_ms=DAY)
    s = UserState("u1")
    assert list_due(s, _trigger(T0), ITEMS, cfg)
    assert not list_due(s, _trigger(T0 + 1), [], cfg) and s.rec_sig == 0
    assert list_due(s, _trigger(T0 + 2), ITEMS, cfg)  # the same items, but owed after the gap


def test_republish_zero_publishes_every_list_ranked():
    cfg = StepConfig(republish_ms=0)
    s = UserState("u1")
    assert all(list_due(s, _trigger(T0 + i), ITEMS, cfg) for i in range(3))


def test_the_signature_is_stable_across_processes_and_never_zero():
    # a hash randomised per process (Python's hash of str) would republish every list after a restart
    assert list_signature(ITEMS) == 267638787322422
    assert list_signature([]) != 0 and 0 < list_signature(ITEMS) < 2**53
