"""Referrals: attribution book, per-user statistics, tiers, the propensity model, the evaluation."""

from __future__ import annotations

import copy
import pickle
import random
from array import array

import pytest

from models.evaluation.referrals import (
    ReferralEvalConfig,
    evaluate,
    precision_at_k,
    render_markdown,
)
from models.profile import DAY_MS, UserState
from models.referrals import (
    REFERRAL_FEATURES,
    TIERS,
    AttributionBook,
    ReferralModels,
    course_stats_add,
    incentive_tier,
    link_for,
    mark_candidate,
    record_credit,
    record_share,
    referral_features,
    referral_prior,
    referral_stats,
)
from schemas.events import Purchase, Share, View

T0 = 1_767_225_600_000
H = 3_600_000


def _share(uid: str, share_id: str, ts: int, channel: str = "wechat_group", course: str = "c1") -> Share:
    return Share(event_id=f"{uid}-{share_id}", user_id=uid, ts=ts, schema_version=1, course_id=course,
                 channel=channel, share_id=share_id)


def _buy(uid: str, n: int, ts: int, share_id: str | None = None, amount: float = 99.0, course: str = "c1") -> Purchase:
    return Purchase(event_id=f"{uid}-p{n}", user_id=uid, ts=ts, schema_version=1, amount=amount, currency="CNY",
                    order_id=f"o-{uid}-{n}", course_id=course, share_id=share_id)


def _view(uid: str, n: int, ts: int) -> View:
    return View(event_id=f"{uid}-v{n}", user_id=uid, ts=ts, schema_version=1, course_id="c1", lesson_id="l",
                watch_seconds=600.0, progress=0.5)


# -- links and the attribution book ---------------------------------------------------------------


def test_links_of_shares_and_referred_purchases_only():
    assert link_for(_share("s", "sh1", T0)) == {"kind": "share", "share_id": "sh1", "sharer": "s", "course_id": "c1",
                                                "channel": "wechat_group", "ts": T0}
    assert link_for(_buy("i", 0, T0 + H, "sh1")) == {"kind": "conversion", "share_id": "sh1", "invitee": "i",
                                                     "amount": 99.0, "course_id": "c1", "ts": T0 + H,
                                                     "event_id": "i-p0"}
    assert link_for(_buy("i", 1, T0)) is None
    assert link_for(_view("i", 0, T0)) is None


def test_a_purchase_of_a_known_share_is_credited_to_the_sharer():
    book = AttributionBook(window_days=30)
    assert book.apply(link_for(_share("s", "sh1", T0))).new_share
    r = book.apply(link_for(_buy("i", 0, T0 + 5 * DAY_MS, "sh1", amount=80.0)))
    assert (r.credited, r.credited_revenue, r.unknown, r.outside_window, r.course_id) == (1, 80.0, False, 0, "c1")
    assert r.credits == [{"sharer": "s", "share_id": "sh1", "invitee": "i", "amount": 80.0, "course_id": "c1",
                          "ts": T0 + 5 * DAY_MS, "event_id": "i-p0", "credited": True}]
    assert book.store["sh1"]["conversions"] == 1 and book.store["sh1"]["revenue"] == 80.0


def test_a_purchase_before_its_share_arrives_waits_and_is_credited_when_it_does():
    book = AttributionBook(window_days=30)
    r = book.apply(link_for(_buy("i", 0, T0 + 2 * H, "sh1")))
    assert r.unknown and not r.credits and r.course_id is None
    assert len(book.store["sh1"]["pending"]) == 1
    again = book.apply(link_for(_buy("i", 0, T0 + 2 * H, "sh1")))  # redelivered while pending
    assert again.duplicate and len(book.store["sh1"]["pending"]) == 1
    r = book.apply(link_for(_share("s", "sh1", T0)))
    assert r.new_share and r.credited == 1 and r.course_id == "c1"
    assert [c["invitee"] for c in r.credits] == ["i"] and r.credits[0]["credited"]
    assert book.store["sh1"]["pending"] == []


def test_purchases_outside_the_window_are_counted_and_passed_on_uncredited():
    book = AttributionBook(window_days=30)
    late = book.apply(link_for(_buy("late", 0, T0 + 31 * DAY_MS, "sh1")))  # before the share: pending
    assert late.unknown
    r = book.apply(link_for(_share("s", "sh1", T0)))
    assert (r.credited, r.outside_window) == (0, 1) and r.credits[0]["credited"] is False
    early = book.apply(link_for(_buy("early", 0, T0 - H, "sh1")))  # stamped before the share
    ok = book.apply(link_for(_buy("ok", 0, T0 + 30 * DAY_MS, "sh1")))  # the window's last moment
    assert early.outside_window == 1 and ok.credited == 1
    assert book.store["sh1"]["outside"] == 2 and book.store["sh1"]["conversions"] == 1


def test_repeats_are_dropped_by_event_id_and_shares_by_id():
    book = AttributionBook()
    book.apply(link_for(_share("s", "sh1", T0)))
    first = book.apply(link_for(_buy("i", 0, T0 + H, "sh1")))
    second = book.apply(link_for(_buy("i", 0, T0 + H, "sh1")))
    assert first.credited == 1 and second.duplicate and second.credited == 0 and not second.credits
    assert book.apply(link_for(_share("s", "sh1", T0))).duplicate
    assert book.apply(link_for(_buy("i", 1, T0 + 2 * H, "sh1"))).credited == 1  # another purchase counts
    assert book.store["sh1"]["conversions"] == 2


def test_self_referrals_and_overflowing_pending_lists_are_counted_not_credited():
    book = AttributionBook(max_pending=2)
    rs = [book.apply(link_for(_buy(f"i{n}", n, T0 + H, "sh1"))) for n in range(3)]
    assert [r.dropped for r in rs] == [0, 0, 1]
    book.apply(link_for(_share("s", "sh2", T0)))
    r = book.apply(link_for(_buy("s", 9, T0 + H, "sh2")))
    assert r.self_referral and not r.credits and r.credited == 0


def test_book_entries_are_replaced_not_mutated():
    book = AttributionBook()
    book.apply(link_for(_share("s", "sh1", T0)))
    before = book.store["sh1"]
    snapshot = copy.deepcopy(before)
    book.apply(link_for(_buy("i", 0, T0 + H, "sh1")))
    assert before == snapshot and book.store["sh1"] is not before


@pytest.mark.parametrize("link", [
    {"kind": "like", "share_id": "x"},
    {"kind": "share", "share_id": "x", "sharer": "s", "course_id": "c", "channel": "qq"},  # no ts
    {"kind": "conversion", "share_id": "x", "invitee": "i", "amount": "a lot", "ts": T0, "event_id": "e"},
    {"kind": "conversion", "share_id": "x", "invitee": "i", "amount": 1.0, "ts": True, "event_id": "e"},
])
def test_malformed_links_raise_value_error(link):
    with pytest.raises(ValueError, match="referral link"):
        AttributionBook().apply(link)


@pytest.mark.parametrize("kwargs", [{"window_days": 0}, {"window_days": "30"}, {"max_ids": 0}, {"max_pending": 1.5}])
def test_book_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        AttributionBook(**kwargs)


def test_course_stats_add_up():
    entry = None
    for shares, conv, rev in [(1, 0, 0.0), (0, 1, 89.1), (1, 2, 10.45)]:
        entry = course_stats_add(entry, shares, conv, rev)
    assert entry == {"shares": 2, "conversions": 3, "revenue": 99.55}


# -- per-user statistics --------------------------------------------------------------------------


def _credit(invitee: str, n: int, ts: int, amount: float = 50.0, credited: bool = True) -> dict:
    return {"sharer": "s", "share_id": "sh", "invitee": invitee, "amount": amount, "course_id": "c1", "ts": ts,
            "event_id": f"{invitee}-{n}", "credited": credited}


def test_share_counts_by_channel_and_a_decayed_rate():
    ref = record_share({}, "qq", T0)
    frozen = copy.deepcopy(ref)
    ref2 = record_share(ref, "qq", T0 + 14 * DAY_MS)  # one half-life later: 1 * 0.5 + 1
    assert ref == frozen  # the input is left alone
    assert ref2["by_channel"] == {"qq": 2} and ref2["share_rate"] == pytest.approx(1.5)
    ref3 = record_share(ref2, "email", T0)  # a late share is added decayed to the reference time
    assert ref3["share_rate"] == pytest.approx(2.0) and ref3["last_share_ts"] == T0 + 14 * DAY_MS
    assert referral_stats(ref3)["shares_by_channel"] == {"qq": 2, "email": 1}


def test_credit_statistics_arithmetic():
    ref = {}
    for ch in ("qq", "qq", "link", "email"):
        ref = record_share(ref, ch, T0)
    for credit in [_credit("a", 0, T0 + H, 100.0), _credit("a", 1, T0 + 2 * H, 50.0), _credit("b", 0, T0 + 3 * H, 80.0),
                   _credit("c", 0, T0 + 40 * DAY_MS, 70.0, credited=False)]:
        frozen = copy.deepcopy(ref)
        ref, applied = record_credit(ref, credit)
        assert applied
    assert frozen != ref
    ref, applied = record_credit(ref, _credit("a", 0, T0 + H, 100.0))  # a repeat
    assert not applied
    stats = referral_stats(ref)
    assert stats == {"shares": 4, "shares_by_channel": {"qq": 2, "link": 1, "email": 1}, "invitees": 3,
                     "converted_invitees": 2, "conversions": 3, "late_conversions": 1, "conversion_rate": 0.5,
                     "revenue": 230.0}
    ref, _ = record_credit(ref, _credit("c", 1, T0 + 41 * DAY_MS, 10.0))  # the late invitee converts after all
    assert referral_stats(ref)["converted_invitees"] == 3 and referral_stats(ref)["invitees"] == 3
    assert referral_stats({})["conversion_rate"] == 0.0
    assert mark_candidate(ref, T0)["candidate_ts"] == T0 and "candidate_ts" not in ref


def test_incentive_tiers_follow_converted_invitees():
    names = [incentive_tier({"converted_invitees": n}).split(":")[0] for n in (0, 1, 2, 3, 10)]
    assert names == ["bronze", "silver", "silver", "gold", "gold"]
    assert incentive_tier({"converted_invitees": 1}, gold_invitees=1) == f"gold: {TIERS[0][1]}"
    for bad in ({"gold_invitees": 0, "silver_invitees": 0}, {"gold_invitees": 1, "silver_invitees": 2},
                {"gold_invitees": 2.5}):
        with pytest.raises(ValueError):
            incentive_tier({}, **bad)


def test_features_are_documented_finite_and_leave_the_state_alone():
    state = UserState("s")
    state.apply(_share("s", "sh1", T0))
    state.referrals = record_share(state.referrals, "qq", T0)
    state.referrals, _ = record_credit(state.referrals, _credit("i", 0, T0 + H))
    frozen = copy.deepcopy(state)
    x = referral_features(state, T0 + 2 * DAY_MS)
    assert state == frozen
    assert set(REFERRAL_FEATURES) <= set(x)
    assert all(isinstance(v, float) and v == v and abs(v) < 1e6 for v in x.values())
    assert x["ch_qq"] == 1.0 and x["ref_converted_log"] > 0 and x["ref_days_since_share"] == pytest.approx(2.0)


# -- the propensity model --------------------------------------------------------------------------


def _train(rm: ReferralModels, days: int = 40, seed: int = 3) -> dict[str, UserState]:
    """'r*' users share daily and their invitees buy within hours; 'n*' users watch and rarely share."""
    rng = random.Random(seed)
    states: dict[str, UserState] = {}
    n = 0
    for day in range(days):
        for u in range(12):
            uid = f"r{u}" if u < 3 else f"n{u}"
            st = states.setdefault(uid, UserState(uid))
            ts = T0 + day * DAY_MS + rng.randrange(8 * H)
            n += 1
            if uid.startswith("r") or rng.random() < 0.03:
                ev = _share(uid, f"sh{n}", ts)
                st.apply(ev)
                st.referrals = record_share(st.referrals, ev.channel, ts)
            else:
                st.apply(_view(uid, n, ts))
            rm.observe(st, ts)
            if uid.startswith("r") and rng.random() < 0.7:
                st.referrals, _ = record_credit(st.referrals, _credit(f"i{n}", 0, ts + H))
                rm.on_credit(st, ts + H)
        rm.advance(T0 + (day + 1) * DAY_MS)
    return states


def test_labels_resolve_positive_on_a_credit_and_negative_at_expiry_never_early():
    rm = ReferralModels(horizon_days=2)
    a, b = UserState("a"), UserState("b")
    for st in (a, b):
        st.apply(_view(st.user_id, 0, T0))
        assert rm.observe(st, T0)
    assert not rm.observe(a, T0 + H)  # one pending snapshot per user
    assert rm.on_credit(a, T0 + DAY_MS) == 1 and (rm.positives, rm.negatives) == (1, 0)
    assert rm.advance(T0 + 2 * DAY_MS - 1) == 0  # b's label is not due yet
    assert rm.advance(T0 + 2 * DAY_MS) == 1 and (rm.positives, rm.negatives) == (1, 1)  # only b: a re-snapshotted
    assert rm.on_credit(b, T0 + 3 * DAY_MS) == 0  # nothing pending for b


def test_model_ranks_referrers_above_others_and_decides_with_a_cool_down():
    rm = ReferralModels(horizon_days=3, threshold=0.3, cooldown_days=7, min_examples=50)
    states = _train(rm)
    assert rm.ready and rm.positives > 20 and rm.negatives > 20
    now = T0 + 40 * DAY_MS
    ref = [rm.propensity(s, s.last_ts) for u, s in states.items() if u.startswith("r")]
    other = [rm.propensity(s, s.last_ts) for u, s in states.items() if u.startswith("n")]
    assert min(ref) > max(other)
    assert rm.metric.get() > 0.7
    r0 = states["r0"]
    frozen = copy.deepcopy(r0)
    d = rm.decide(r0, now)
    assert r0 == frozen
    assert d is not None and d.user_id == "r0" and d.propensity >= 0.3 and d.incentive.startswith("gold")
    assert d.stats == referral_stats(r0.referrals)
    r0.referrals = mark_candidate(r0.referrals, now)
    assert rm.decide(r0, now + 6 * DAY_MS) is None  # cool-down
    assert rm.decide(r0, now + 7 * DAY_MS) is not None
    assert all(rm.decide(states[u], now) is None for u in states if u.startswith("n"))


def test_no_candidates_before_the_model_is_trained_and_calibrated_without_a_prior():
    rm = ReferralModels(min_examples=10, prior_examples=0)
    st = UserState("s")
    st.apply(_share("s", "sh1", T0))
    rm.observe(st, T0)
    assert not rm.ready and rm.propensity(st, T0) == pytest.approx(0.02)  # the prior, before any label
    assert rm.decide(st, T0) is None


def _proven_sharer(uid: str = "s", day: int = 0) -> UserState:
    """Shares daily for five days, one invitee bought (credited) on the fourth."""
    st = UserState(uid)
    for d in range(5):
        ts = T0 + (day + d) * DAY_MS
        st.apply(_share(uid, f"{uid}-sh{d}", ts))
        st.referrals = record_share(st.referrals, "wechat_group", ts)
    st.referrals, _ = record_credit(st.referrals, _credit("i1", 0, T0 + (day + 3) * DAY_MS))
    return st


def test_a_fresh_partition_model_publishes_candidates_from_the_shared_prior():
    """Before the prior, a partition with fewer than min_examples labels of its own published
    nothing (the demo and small platforms saw no candidate); now the prior decides until then."""
    now = T0 + 5 * DAY_MS
    rm = ReferralModels()  # the live defaults: min_examples 200, prior_examples 200
    st, idle = _proven_sharer(), UserState("v")
    idle.apply(_view("v", 0, T0))
    for u in (st, idle):
        rm.observe(u, u.last_ts)
    assert rm.positives + rm.negatives < rm.min_examples and not rm.ready and rm.source == "prior"
    p = rm.propensity(st, now)
    assert p == pytest.approx(referral_prior(referral_features(st, now))) and p >= rm.threshold
    d = rm.decide(st, now)
    assert d is not None and d.user_id == "s" and d.propensity == round(p, 4) and d.incentive.startswith("silver")
    assert rm.decide(idle, now) is None and rm.propensity(idle, now) < 0.01  # no sharing: far below
    sharer_only = UserState("q")  # shares often, nobody bought yet: ranked above idle, not a candidate
    for d_ in range(5):
        sharer_only.apply(_share("q", f"q{d_}", T0 + d_ * DAY_MS))
        sharer_only.referrals = record_share(sharer_only.referrals, "qq", T0 + d_ * DAY_MS)
    assert rm.propensity(idle, now) < rm.propensity(sharer_only, now) < rm.threshold
    assert rm.decide(sharer_only, now) is None
    assert ReferralModels(prior_examples=0).decide(st, now) is None  # the old behaviour


def test_a_ready_model_blends_its_own_probability_with_the_prior_by_label_count():
    rm = ReferralModels(horizon_days=3, min_examples=50)
    states = _train(rm)
    assert rm.ready and rm.source == "model"
    st, now = states["r0"], states["r0"].last_ts
    x = referral_features(st, now)
    n = rm.positives + rm.negatives
    want = (n * rm.classifier.predict_proba(x) + 200 * referral_prior(x)) / (n + 200)
    assert rm.propensity(st, now) == pytest.approx(want)


def test_checkpoints_written_before_the_prior_restore_into_a_model_with_one():
    """The prior is a parameter, not learned state: format 2 is unchanged, an old blob (or a
    model pickled whole before the attribute existed) restores and decides without crashing."""
    rm = ReferralModels(horizon_days=3, min_examples=50, seed=4)
    _train(rm, days=20)
    old = pickle.dumps({  # format 2 exactly as written before the prior
        "format": 2, "horizon_days": 3, "model": "logreg", "classifier": rm.classifier, "metric": rm.metric,
        "positives": rm.positives, "negatives": rm.negatives,
        "means": (rm.mean_prediction, rm.mean_label, rm.snapshots), "watermark": rm.watermark})
    st, now = _proven_sharer(day=20), T0 + 25 * DAY_MS
    new = ReferralModels(horizon_days=3, min_examples=50)
    assert new.restore_learned(old) == "restored" and (new.positives, new.negatives) == (rm.positives, rm.negatives)
    assert new.prior_examples == 200 and new.ready == rm.ready
    assert new.propensity(st, now) == pytest.approx(rm.propensity(st, now))
    new.decide(st, now)
    fresh = ReferralModels()
    assert fresh.restore_learned(b"garbage") == "rebuilt" and fresh.decide(st, now) is not None  # the prior
    state = rm.__dict__.copy()
    del state["prior_examples"]
    legacy = ReferralModels.__new__(ReferralModels)
    legacy.__setstate__(state)
    assert legacy.prior_examples == 0 and legacy.source in {"model", "unready"}
    assert legacy.propensity(st, now) == pytest.approx(legacy.classifier.predict_proba(referral_features(st, now)))


def test_a_model_that_cannot_rank_its_own_labels_publishes_nothing():
    """Credits at random, unrelated to what users do: enough labels, but no ranking skill."""
    rng = random.Random(7)
    rm = ReferralModels(horizon_days=2, min_examples=50, threshold=0.01)
    states = {f"u{u}": UserState(f"u{u}") for u in range(12)}
    for day in range(60):
        for uid, st in states.items():
            ts = T0 + day * DAY_MS + rng.randrange(8 * H)
            st.apply(_view(uid, day, ts))
            rm.observe(st, ts)
            if rng.random() < 0.15:
                rm.on_credit(st, ts + H)
        rm.advance(T0 + (day + 1) * DAY_MS)
    assert rm.positives >= 10 and rm.negatives >= 50 and rm.metric.get() < rm.min_auc
    assert not rm.ready and all(rm.decide(st, T0 + 61 * DAY_MS) is None for st in states.values())


def test_check_due_once_per_user_day_unless_forced():
    rm = ReferralModels()
    assert rm.check_due("u", T0) and not rm.check_due("u", T0 + H) and rm.check_due("u", T0 + H, force=True)
    assert rm.check_due("u", T0 + DAY_MS)


def test_pickle_and_checkpoint_round_trips_give_identical_predictions():
    rm = ReferralModels(horizon_days=3, min_examples=50, seed=4)
    states = _train(rm, days=20)
    probe = [(s, s.last_ts) for s in states.values()]
    want = [rm.propensity(s, t) for s, t in probe]
    params = {"horizon_days": 3, "min_examples": 50, "seed": 4}
    for other in (pickle.loads(pickle.dumps(rm)), ReferralModels.restore(rm.checkpoint(), **params)):
        assert [other.propensity(s, t) for s, t in probe] == want
        assert (other.positives, other.negatives, other.watermark, other.ready) == (
            rm.positives, rm.negatives, rm.watermark, rm.ready)
        assert other.metric.get() == pytest.approx(rm.metric.get())
    assert len(ReferralModels.restore(rm.checkpoint(), **params).labels) == 0  # pending snapshots start empty


def test_restore_takes_every_parameter_from_the_current_settings():
    """A changed threshold, cool-down or minimum (COURSEPULSE_REFERRAL_*) applies to a partition
    that has a checkpoint; a changed horizon relearns; a bad or old-format blob never crashes."""
    rm = ReferralModels(horizon_days=3, min_examples=50, seed=4)
    _train(rm, days=20)
    blob = rm.checkpoint()
    other = ReferralModels(horizon_days=3, threshold=0.9, cooldown_days=2.0, min_examples=7)
    assert other.restore_learned(blob) == "restored"
    assert (other.threshold, other.cooldown_days, other.min_examples) == (0.9, 2.0, 7)
    assert (other.positives, other.negatives) == (rm.positives, rm.negatives)
    relearn = ReferralModels(horizon_days=5)
    assert relearn.restore_learned(blob) == "relearning" and relearn.positives == 0
    fresh = ReferralModels()
    assert fresh.restore_learned(b"not a pickle") == "rebuilt" and fresh.positives == 0
    old = pickle.dumps({  # format 1 stored the constructor arguments beside the learned state
        "args": (3, 0.3, 7.0, 200, 0.02, 0.7, 0.0, 0.005, "logreg", 0), "classifier": rm.classifier,
        "metric": rm.metric, "positives": rm.positives, "negatives": rm.negatives,
        "means": (rm.mean_prediction, rm.mean_label, rm.snapshots), "watermark": rm.watermark})
    migrated = ReferralModels(horizon_days=3, threshold=0.8)
    assert migrated.restore_learned(old) == "migrated"
    assert migrated.threshold == 0.8 and migrated.positives == rm.positives


def test_clone_is_unfitted_with_the_same_arguments():
    rm = ReferralModels(horizon_days=5, threshold=0.4, cooldown_days=3, min_examples=7, prior=0.1, min_auc=0.6,
                        lr=0.01, seed=2)
    _train(rm, days=5)
    new = rm.clone()
    assert (new.horizon_days, new.threshold, new.cooldown_days, new.min_examples, new.prior, new.min_auc, new.lr,
            new.seed) == (5, 0.4, 3, 7, 0.1, 0.6, 0.01, 2)
    assert new.positives == new.negatives == 0 and len(new.labels) == 0 and new.classifier.n_learned == 0


@pytest.mark.parametrize("kwargs", [
    {"horizon_days": 0}, {"horizon_days": "14"}, {"threshold": 0}, {"threshold": 1.5}, {"cooldown_days": -1},
    {"min_examples": -1}, {"min_examples": 2.5}, {"prior": 0}, {"prior": 1}, {"min_auc": 1.0}, {"lr": 0},
    {"l2": -1}, {"model": "forest"}, {"prior_examples": -1}, {"prior_examples": 1.5},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        ReferralModels(**kwargs)


# -- the offline evaluation ------------------------------------------------------------------------


def test_precision_at_k_breaks_ties_in_expectation():
    assert precision_at_k([0.9, 0.8, 0.1], [True, False, True], 1) == 1.0
    assert precision_at_k([1, 1, 1, 1], [True, False, False, False], 2) == 0.25
    assert precision_at_k([1, 0], [True, False], 5) == 0.5  # k larger than the population
    with pytest.raises(ValueError):
        precision_at_k([1], [True], 0)
    with pytest.raises(ValueError):
        precision_at_k([1, 2], [True], 1)


def test_evaluation_replays_a_simulation_against_its_truth():
    from tools.simulator import PlatformSimulator, SimConfig

    sim = PlatformSimulator(SimConfig(users=300, days=30, seed=5, start_ms=T0))
    events = list(sim.events())
    result = evaluate(events, sim.truth(), ReferralEvalConfig(min_examples=50, ks=(5, 10)))
    assert result["attribution"]["credited"] > 0 and result["model"]["labels"] > 0
    assert [c["day"] for c in result["cutoffs"]] == [10.0, 20.0, 30.0]
    last = result["cutoffs"][-1]
    for name in ("model", "most_shares", "most_conversions_then_shares"):
        assert all(0 <= p <= 1 for p in last[name]["precision"].values())
    text = render_markdown(result, "python -m models.evaluation.referrals E T")
    assert "baseline: most shares so far" in text and text.startswith("<!-- referrals-eval:begin -->")


def test_a_pending_referral_snapshot_keeps_its_features_as_doubles_and_learns_the_same_example():
    rm = ReferralModels(horizon_days=2)
    st = UserState("s")
    st.apply(_view("s", 0, T0))
    st.apply(_share("s", "sh1", T0 + H))
    assert rm.observe(st, T0 + H)
    names, values, p = rm.labels._pending["s"][1]  # noqa: SLF001 - the stored form is the point
    x = referral_features(st, T0 + H)
    assert isinstance(values, array) and values.typecode == "d"
    assert dict(zip(names, values, strict=True)) == x and p == rm.classifier.predict_proba(x)
    other = UserState("t")
    other.apply(_view("t", 0, T0))
    rm.observe(other, T0)
    assert rm.labels._pending["t"][1][0] is names  # one names tuple for every snapshot  # noqa: SLF001
    twin = copy.deepcopy(rm.classifier)
    assert rm.advance(T0 + H + 2 * DAY_MS) == 2  # both expire unconverted: negatives, t's first
    for features in (referral_features(other, T0), x):  # the same examples, from the dicts
        twin.learn(features, False, t=T0 + H + 2 * DAY_MS)
    assert rm.classifier.predict_proba(x) == twin.predict_proba(x)
