"""The platform simulator: deterministic, time-ordered, schema-valid, and true to its ground truth."""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from collections import Counter

import pytest

from schemas.base import format_ts, parse, to_dict
from schemas.eventfile import read_events
from schemas.events import Course, Purchase, Share, View
from tools.simulator import (
    PlatformSimulator,
    SimConfig,
    SimTruth,
    read_truth,
    write_jsonl,
    write_truth,
)

START = 1_735_689_600_000  # 2025-01-01T00:00:00Z
DAY = 86_400_000
SMALL = SimConfig(users=300, courses=30, days=21, seed=3, start_ms=START)


@pytest.fixture(scope="module")
def run() -> tuple[PlatformSimulator, list, SimTruth]:
    sim = PlatformSimulator(SMALL)
    events = list(sim.events())
    return sim, events, sim.truth()


def _user_events(events: list) -> list:
    return [r for r in events if not isinstance(r, Course)]


def _leading(sim: PlatformSimulator, events: list) -> int:
    """Number of leading catalogue records (courses published before the start)."""
    n = 0
    while n < len(events) and isinstance(events[n], Course) and events[n].published_at < sim.start_ms:
        n += 1
    return n


def test_same_seed_same_events_and_truth() -> None:
    a = PlatformSimulator(SMALL)
    b = PlatformSimulator(SMALL)
    events_a = list(a.events())
    assert events_a == list(b.events())
    assert a.truth() == b.truth()
    assert list(a.events()) == events_a  # every events() call starts afresh


def test_different_seed_different_events(run) -> None:
    _, events, _ = run
    other = list(PlatformSimulator(dataclasses.replace(SMALL, seed=4)).events())
    assert other != events
    assert [r.event_id for r in _user_events(other)][:5] != [r.event_id for r in _user_events(events)][:5]


def test_volume_and_mix(run) -> None:
    _, events, truth = run
    kinds = Counter(r.kind for r in events)
    assert kinds["course"] == SMALL.courses
    assert kinds["view"] > 1000
    assert kinds["purchase"] > 20
    assert kinds["share"] > 5
    assert kinds["view"] > kinds["purchase"] > kinds["share"]
    assert len(truth.users) >= SMALL.users


def test_catalogue(run) -> None:
    sim, events, _ = run
    courses = [r for r in events if isinstance(r, Course)]
    assert sorted(courses, key=lambda c: c.course_id) == sim.catalogue
    assert [c.course_id for c in sim.catalogue] == [f"c{i:04d}" for i in range(1, SMALL.courses + 1)]
    new = [c for c in sim.catalogue if c.published_at >= sim.start_ms]
    assert 1 <= len(new) <= 0.2 * SMALL.courses
    for c in new:
        assert c.ts == c.published_at < sim.end_ms
    lead = _leading(sim, events)
    assert lead == SMALL.courses - len(new)
    assert all(c.ts == sim.start_ms for c in events[:lead])
    assert len({c.title for c in sim.catalogue}) == len(sim.catalogue)
    assert all(c.tags and c.category in c.tags for c in sim.catalogue)
    assert any(c.price == 0 for c in sim.catalogue) and any(c.price >= 49 for c in sim.catalogue)


def test_time_is_ordered_and_within_bounds(run) -> None:
    sim, events, _ = run
    assert sim.end_ms - sim.start_ms == 21 * DAY
    lead = _leading(sim, events)
    times = [r.ts for r in events[lead:]]
    assert times == sorted(times)
    assert all(sim.start_ms <= t < sim.end_ms for t in times)


def test_every_record_is_valid(run) -> None:
    _, events, _ = run
    for r in events:
        assert parse(type(r), to_dict(r)) == r
        if isinstance(r, Purchase):
            assert (r.course_id is None) != (r.plan is None)
            assert r.currency == "CNY"
        if isinstance(r, View):
            assert r.lesson_id.startswith(r.course_id + "-l")
            assert 0 < r.watch_seconds <= 7200


def test_ids_are_unique(run) -> None:
    _, events, _ = run
    evs = _user_events(events)
    assert len({r.event_id for r in evs}) == len(evs)
    orders = [r.order_id for r in evs if isinstance(r, Purchase)]
    assert len(set(orders)) == len(orders)
    shares = [r.share_id for r in evs if isinstance(r, Share)]
    assert len(set(shares)) == len(shares)


def test_progress_is_non_decreasing_and_some_complete(run) -> None:
    _, events, _ = run
    last: dict[tuple[str, str], float] = {}
    for r in events:
        if isinstance(r, View):
            key = (r.user_id, r.course_id)
            assert r.progress >= last.get(key, 0.0)
            last[key] = r.progress
    finals = list(last.values())
    assert any(p == 1.0 for p in finals)
    assert sum(p < 0.5 for p in finals) > len(finals) / 3  # many abandon midway


def test_plans_and_course_purchases(run) -> None:
    _, events, _ = run
    purchases = [r for r in events if isinstance(r, Purchase)]
    plans = [p for p in purchases if p.plan is not None]
    assert all(p.plan in ("monthly", "annual") for p in plans)
    assert len(plans) < 0.2 * len(purchases)
    prices = {c.course_id: c.price for c in PlatformSimulator(SMALL).catalogue}
    for p in purchases:
        if p.course_id is not None:
            assert 0 < p.amount <= prices[p.course_id]


def test_referred_purchases_follow_their_share(run) -> None:
    _, events, truth = run
    shares: dict[str, Share] = {}
    referred = 0
    for r in events:
        if isinstance(r, Share):
            shares[r.share_id] = r
        elif isinstance(r, Purchase) and r.share_id is not None:
            assert r.share_id in shares, "a purchase names a share that was not emitted before it"
            assert r.course_id == shares[r.share_id].course_id
            assert truth.users[r.user_id].invited_by_share == r.share_id
            referred += 1
    assert referred > 0
    for u in truth.users.values():
        if u.invited_by_share is not None:
            share = shares[u.invited_by_share]
            assert share.ts <= u.joined_at <= share.ts + 5 * DAY + 60_000


def test_churners_go_silent(run) -> None:
    sim, events, truth = run
    last: dict[str, int] = {}
    for r in _user_events(events):
        last[r.user_id] = r.ts
    churners = [u for u in truth.users.values() if u.churned_at is not None]
    base_churners = [u for u in churners if u.invited_by_share is None]
    assert len(base_churners) == round(SMALL.churn_fraction * SMALL.users)
    for u in churners:
        assert u.drift_start is not None
        assert last[u.user_id] == u.churned_at
        assert u.drift_start <= u.churned_at < sim.end_ms
    for u in truth.users.values():
        if u.drift_start is None:
            assert u.churned_at is None
        assert math.isclose(sum(u.interests.values()), 1.0)
        assert 1 <= len(u.interests) <= 8


def test_truth_counts_every_user_and_event(run) -> None:
    _, events, truth = run
    per_user = Counter(r.user_id for r in _user_events(events))
    assert set(per_user) <= set(truth.users)
    assert all(truth.users[uid].events == n for uid, n in per_user.items())
    assert truth.complete
    invitees = [u for u in truth.users.values() if u.invited_by_share]
    assert len(truth.users) == SMALL.users + len(invitees)
    assert sum(u.is_referrer for u in truth.users.values() if not u.invited_by_share) == 30


def test_referrers_invitees_convert_more() -> None:
    sim = PlatformSimulator(SimConfig(users=800, courses=40, days=30, seed=1, start_ms=START,
                                      referrer_fraction=0.2))
    events = list(sim.events())
    truth = sim.truth()
    sharer = {r.share_id: r.user_id for r in events if isinstance(r, Share)}
    converted = {(r.user_id, r.share_id) for r in events if isinstance(r, Purchase) and r.share_id}
    rates = {}
    for from_referrer in (True, False):
        group = [u for u in truth.users.values() if u.invited_by_share
                 and truth.users[sharer[u.invited_by_share]].is_referrer is from_referrer]
        assert len(group) >= 10
        rates[from_referrer] = sum((u.user_id, u.invited_by_share) in converted for u in group) / len(group)
    assert rates[True] > 2 * rates[False]
    shares = Counter(sharer.values())
    referrers = [u for u in truth.users.values() if u.is_referrer]
    others = [u for u in truth.users.values() if not u.is_referrer]
    assert (sum(shares[u.user_id] for u in referrers) / len(referrers)
            > 3 * sum(shares[u.user_id] for u in others) / len(others))


def test_jsonl_round_trip(run, tmp_path) -> None:
    _, events, _ = run
    path = tmp_path / "sub" / "events.jsonl"
    assert write_jsonl(iter(events), path) == len(events)
    first = path.read_text().splitlines()[0]
    assert first.startswith('{"type":"course"')
    assert list(read_events(path)) == events


def test_read_jsonl_reports_the_line(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"type":"share","event_id":"e1","user_id":"u1","ts":1,"schema_version":1,'
                    '"course_id":"c1","channel":"fax","share_id":"s1"}\n')
    with pytest.raises(Exception, match=r"bad.jsonl:1: channel"):
        list(read_events(path))
    path.write_text('\n{"type":"nope"}\n')
    with pytest.raises(Exception, match=r":2: type"):
        list(read_events(path))


def test_truth_files(run, tmp_path) -> None:
    _, _, truth = run
    write_truth(truth, tmp_path)
    with (tmp_path / "labels.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["user_id", "churned_at"]
    labels = dict(rows[1:])
    assert set(labels) == set(truth.users)
    for uid, u in truth.users.items():
        assert labels[uid] == ("" if u.churned_at is None else format_ts(u.churned_at))
    assert read_truth(tmp_path) == truth


def test_truth_without_consuming_events() -> None:
    a = PlatformSimulator(dataclasses.replace(SMALL, users=50))
    b = PlatformSimulator(dataclasses.replace(SMALL, users=50))
    list(b.events())
    assert a.truth() == b.truth()


def test_default_start_is_a_past_utc_midnight() -> None:
    sim = PlatformSimulator(SimConfig(users=5, courses=3, days=2))
    assert sim.config.start_ms is not None and sim.config.start_ms % DAY == 0
    assert sim.start_ms == sim.config.start_ms
    now = time.time() * 1000
    assert now - 3 * DAY <= sim.start_ms <= now - 2 * DAY and sim.end_ms <= now


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("users", 0),
        ("users", 1.5),
        ("users", True),
        ("courses", 0),
        ("days", 0),
        ("days", -1.0),
        ("days", float("nan")),
        ("days", "60"),
        ("start_ms", -1),
        ("start_ms", 10**14),
        ("start_ms", 1.5e12),
        ("seed", -1),
        ("churn_fraction", 1.5),
        ("churn_fraction", -0.1),
        ("referrer_fraction", 2.0),
        ("currency", "cny"),
        ("currency", "EURO"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SimConfig(**{field: value})


def test_simulator_rejects_non_config() -> None:
    with pytest.raises(ValueError, match="SimConfig"):
        PlatformSimulator({"users": 10})  # type: ignore[arg-type]


def test_tiny_configs_work() -> None:
    for cfg in (SimConfig(users=1, courses=1, days=0.5, start_ms=START, seed=0),
                SimConfig(users=20, courses=2, days=3, start_ms=0, churn_fraction=1.0, referrer_fraction=1.0)):
        sim = PlatformSimulator(cfg)
        events = list(sim.events())
        for r in events:
            assert parse(type(r), to_dict(r)) == r
        assert all(sim.start_ms <= r.ts < sim.end_ms for r in _user_events(events))
