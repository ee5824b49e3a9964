"""Per-user state arithmetic, de-duplication, segments, RFM and the published profile."""

from __future__ import annotations

import pickle
import random

import orjson
import pytest

from models.profile import (
    DAY_MS,
    FP_CHARS,
    PartitionStats,
    SegmentRules,
    UserState,
    build_profile,
    event_fingerprint,
    rfm_scores,
)
from schemas.events import Purchase, Share, View

T0 = 1_767_225_600_000  # 2026-01-01
H = 3_600_000


def view(i: int, ts: int, course: str = "c1", progress: float = 0.1, watch: float = 600.0, **kw) -> View:
    return View(event_id=f"v{i}", user_id="u1", ts=ts, schema_version=1, course_id=course, lesson_id="l1",
                watch_seconds=watch, progress=progress, **kw)


def buy(i: int, ts: int, amount: float = 100.0, course: str | None = "c9", plan: str | None = None, **kw) -> Purchase:
    return Purchase(event_id=f"p{i}", user_id="u1", ts=ts, schema_version=1, amount=amount, currency="CNY",
                    order_id=f"o{i}", course_id=course, plan=plan, **kw)


def share(i: int, ts: int) -> Share:
    return Share(event_id=f"s{i}", user_id="u1", ts=ts, schema_version=1, course_id="c1", channel="link",
                 share_id=f"sh{i}")


def test_counts_watch_time_spend_and_completion():
    s = UserState("u1")
    s.apply(view(1, T0, progress=0.5, watch=1800))
    s.apply(view(2, T0 + H, progress=0.95, watch=1800))
    s.apply(view(3, T0 + 2 * H, progress=1.0, watch=60))  # already completed: counted once
    s.apply(buy(4, T0 + 3 * H, amount=199.0, rec_id="r1"))
    s.apply(buy(5, T0 + 4 * H, amount=30.0, course=None, plan="monthly", share_id="sh7"))
    s.apply(share(6, T0 + 5 * H))
    assert (s.views, s.purchases, s.shares) == (3, 2, 1)
    assert s.watch_s == pytest.approx(3660)
    assert s.spend == pytest.approx(229.0)
    assert s.completed == 1
    assert s.owned == ["c1", "c9"]
    assert s.plan == "monthly" and s.referred_by == "sh7" and s.rec_purchases == 1
    assert (s.first_ts, s.last_ts, s.last_purchase_ts) == (T0, T0 + 5 * H, T0 + 4 * H)
    assert s.courses["c1"][1] == 1.0 and s.courses["c9"][3] == 1
    assert s.recent_courses() == ["c9", "c1"]


def test_repeated_event_ids_are_dropped_and_change_nothing():
    s = UserState("u1")
    assert s.apply(view(1, T0))
    before = s.to_dict()
    assert not s.apply(view(1, T0 + H, watch=999))
    assert s.to_dict() == before


def test_dedupe_memory_is_bounded():
    s = UserState("u1")
    for i in range(100):
        s.apply(view(i, T0 + i * 1000), dedupe_window=10)
    assert len(s.seen) == 10 * FP_CHARS  # 11 bytes an event, whatever the id's length
    assert s.last_event_id == "v99"
    assert s.seen.endswith(event_fingerprint("v99"))
    assert not s.apply(view(95, T0), dedupe_window=10)
    assert s.apply(view(5, T0), dedupe_window=10)  # forgotten: outside the window


def test_sessions_and_days_do_not_depend_on_arrival_order():
    hours = [0, 0.2, 0.4, 5, 5.1, 30, 30.45, 30.9, 80]  # sessions: {0..0.4} {5,5.1} {30..30.9} {80}
    rng = random.Random(3)
    for _ in range(50):
        rng.shuffle(hours)
        s = UserState("u1")
        for i, h in enumerate(hours):
            s.apply(view(i, T0 + int(h * H)))
        assert s.sessions == 4
        assert s.active_days == 3  # day 0, day 1 (30h), day 3 (80h)


def test_course_history_is_bounded_but_owned_courses_are_kept():
    s = UserState("u1")
    for i in range(30):
        s.apply(buy(i, T0 + i * H, course=f"c{i}"), max_courses=5)
    assert len(s.courses) == 5
    assert set(s.courses) == {f"c{i}" for i in range(25, 30)}
    assert len(s.owned) == 30


@pytest.mark.parametrize(
    ("inactive", "tenure", "purchases", "segment"),
    [(50, 100, 5, "churned"), (25, 100, 5, "dormant"), (8, 100, 5, "at-risk"), (1, 3, 0, "new"),
     (1, 40, 2, "loyal"), (1, 40, 1, "active"), (1, 20, 3, "active")],
)
def test_segment_rules(inactive, tenure, purchases, segment):
    assert SegmentRules().segment(inactive, tenure, purchases) == segment


def test_segment_rules_reject_inconsistent_thresholds():
    with pytest.raises(ValueError, match="at_risk_days"):
        SegmentRules(at_risk_days=30, dormant_days=20)


@pytest.mark.parametrize(
    ("recency", "purchases", "spend", "ltv", "rfm"),
    [(0, 0, 0, 100, "511"), (5, 1, 40, 100, "422"), (10, 2, 90, 100, "333"), (20, 4, 150, 100, "244"),
     (60, 9, 500, 100, "155"), (1, 1, 10, 0, "523")],
)
def test_rfm_scores(recency, purchases, spend, ltv, rfm):
    assert rfm_scores(recency, purchases, spend, ltv) == rfm


def test_profile_activity_and_loyalty_follow_the_documented_formulas():
    s = UserState("u1")
    s.apply(view(1, T0, watch=7200))  # 2 hours, session 1
    s.apply(buy(2, T0 + 10 * H, amount=300))  # session 2
    s.apply(share(3, T0 + 20 * H))  # session 3
    watermark = T0 + 4 * DAY_MS
    p = build_profile(s, watermark, avg_ltv=150.0)
    tenure = 4.0
    assert p.tenure_days == pytest.approx(tenure)
    assert p.activity == pytest.approx((3 + 2 + 1 + 1) / tenure, abs=1e-4)
    assert p.loyalty == pytest.approx(1 * 300 * 2 / 150.0, abs=1e-4)
    assert p.recency_days == pytest.approx(4 - 20 / 24, abs=1e-3)
    assert p.segment == "new" and p.rfm == "425"  # 3.2 days since the last event: R=4
    assert p.updated_at == watermark


def test_profile_of_a_silent_user_moves_through_segments_with_the_watermark():
    s = UserState("u1")
    s.apply(view(1, T0))
    s.apply(view(2, T0 + 20 * DAY_MS))
    rules = SegmentRules()
    seen = [build_profile(s, T0 + (20 + d) * DAY_MS, 0.0, rules).segment for d in (1, 8, 22, 46)]
    assert seen == ["active", "at-risk", "dormant", "churned"]


def test_partition_stats_watermark_and_average_ltv():
    ps = PartitionStats()
    assert ps.observe(T0, amount=100.0, new_buyer=True)
    assert not ps.observe(T0 - H)
    ps.observe(T0 + H, amount=300.0, new_buyer=True)
    ps.observe(T0 + 2 * H, amount=100.0, new_buyer=False)
    assert ps.avg_ltv == pytest.approx(250.0)
    assert ps.watermark(H) == T0 + H
    assert PartitionStats.from_dict(ps.to_dict()) == ps


def test_state_survives_dict_and_pickle_round_trips():
    s = UserState("u1")
    s.apply(view(1, T0))
    s.apply(buy(2, T0 + H))
    assert UserState.from_dict(s.to_dict()) == s
    assert pickle.loads(pickle.dumps(s)) == s


def test_decayed_activity_sums_halve_every_half_life_and_ignore_arrival_order():
    from models.profile import LONG_HL_DAYS, SHORT_HL_DAYS

    s = UserState("u1")
    s.apply(view(1, T0, watch=100))
    ws, wl, es, el = s.activity_at(T0 + int(SHORT_HL_DAYS * DAY_MS))
    assert ws == pytest.approx(50) and es == pytest.approx(0.5)
    assert wl == pytest.approx(100 * 2 ** (-SHORT_HL_DAYS / LONG_HL_DAYS))
    a, b = UserState("u1"), UserState("u1")
    events = [view(i, T0 + i * DAY_MS // 3, watch=10 * i) for i in range(1, 8)]
    for e in events:
        a.apply(e)
    for e in reversed(events):
        b.apply(e)
    assert a.activity_at(T0 + 5 * DAY_MS) == pytest.approx(b.activity_at(T0 + 5 * DAY_MS))


def test_repeats_are_found_after_the_state_is_read_back_in_every_form():
    s = UserState("u1")
    for i in range(5):
        s.apply(view(i, T0 + i))
    assert not s.apply(view(3, T0 + H))
    for back in (UserState.from_dict(s.to_dict()), UserState.from_bytes(s.to_bytes())):
        assert not back.apply(view(4, T0 + H)) and back.apply(view(9, T0 + H))
        assert back.last_event_id == "v9"


def test_a_fingerprint_found_off_a_fingerprint_boundary_is_not_a_repeat():
    s = UserState("u1")
    ev = view(3, T0)
    fp = event_fingerprint(ev.event_id)
    # the event's fingerprint appears in the memory, but straddling two stored fingerprints
    s.seen = "x" * 3 + fp + "y" * (FP_CHARS - 3)
    assert s.seen.find(fp) == 3
    assert s.apply(ev)
    assert not s.apply(ev)  # now stored on its boundary: a repeat


def test_a_state_written_with_event_ids_is_migrated():
    old = UserState("u1")
    for i in range(3):
        old.apply(view(i, T0 + i))
    legacy = old.to_dict()
    legacy.pop("seen"), legacy.pop("last_event_id")
    legacy["recent_ids"] = ["v0", "v1", "v2"]  # how states were kept before fingerprints
    for back in (UserState.from_dict(legacy), UserState.from_bytes(orjson.dumps(legacy))):
        assert back.to_dict() == old.to_dict()
        assert not back.apply(view(1, T0 + H))


def test_an_event_older_than_the_full_session_window_opens_no_session():
    """A record re-routed (or redelivered) after the user's window moved on: in order it sat in a
    session with its neighbours; counted as a new one, the profile differed by the arrival order."""
    from models.profile import RECENT_WINDOW, SESSION_GAP_MS, UserState
    from schemas.events import View

    base = 1_735_689_600_000
    s = UserState("u1")

    def view(i: int, ts: int) -> View:
        return View(event_id=f"e{i}", user_id="u1", ts=ts, schema_version=1, course_id="c1", lesson_id="l1",
                    watch_seconds=60.0, progress=0.1)

    for i in range(RECENT_WINDOW):
        s.apply(view(i, base + (i + 10) * 2 * SESSION_GAP_MS))  # each its own session
    assert s.sessions == RECENT_WINDOW
    s.apply(view(999, base))  # far older than the whole window
    assert s.sessions == RECENT_WINDOW


@pytest.mark.parametrize("partition", [-1, 0, 7, 11])
def test_the_partition_of_a_stored_state_is_read_without_decoding_it_whatever_its_keys(partition):
    s = UserState('u"partition":3')
    for i, course in enumerate(['partition', '"partition":5', 'c"partition":1}']):
        s.apply(view(i, T0 + i, course=course))
    s.referrals = {"partition": 9, "shares_by_channel": {'"partition":4': 2}}
    s.partition = partition
    raw = s.to_bytes()
    assert raw.count(b'"partition":') > 1  # the user's keys hold the pattern too
    assert UserState.partition_in(raw) == partition
    assert UserState.partition_in(bytearray(raw)) == partition
    assert UserState.partition_in(s.to_dict()) == partition  # a value kept as objects
    assert UserState.partition_in(orjson.dumps({"user_id": "u1"})) == -1  # written before the field
    # another field order (not what to_bytes writes) is decoded, not misread
    odd = orjson.dumps({"partition": partition, "courses": {"x": 1}, "referrals": {"partition": "p"}})
    assert UserState.partition_in(odd) == partition
