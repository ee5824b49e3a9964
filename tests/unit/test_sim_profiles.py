"""Simulator profiles: platform shapes other than the paid-course default."""

from __future__ import annotations

import argparse
import statistics
from collections import Counter, defaultdict

import pytest

from schemas.events import Purchase, View
from streams.cli import build_parser
from tools.simulator import PROFILES, PlatformSimulator, SimConfig, profile_config

START = 1_735_689_600_000  # 2025-01-01


def _run(name: str, users: int = 300, days: float = 40.0):
    sim = PlatformSimulator(profile_config(name, users=users, days=days, seed=5, start_ms=START))
    events = [e for e in sim.events() if isinstance(e, View | Purchase)]
    return sim, events


def test_the_default_profile_is_the_default_config():
    assert profile_config("default", users=50, seed=1) == SimConfig(users=50, seed=1)
    with pytest.raises(ValueError, match="profile must be one of"):
        profile_config("nope")


def test_the_cli_offers_every_profile():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    sim = sub.choices["simulate"]
    choices = next(a.choices for a in sim._actions if a.dest == "profile")  # noqa: SLF001
    assert sorted(choices) == sorted(PROFILES)
    assert sim.parse_args([]).profile == "default" and sim.parse_args([]).courses is None


def test_small_popular_is_dominated_by_a_few_courses():
    sim, events = _run("small-popular")
    assert len(sim.catalogue) == 30
    _, default_events = _run("default")
    def top5(evs):
        firsts = Counter()
        seen = set()
        for e in evs:
            if e.course_id and (e.user_id, e.course_id) not in seen:
                seen.add((e.user_id, e.course_id))
                firsts[e.course_id] += 1
        return sum(c for _, c in firsts.most_common(5)) / sum(firsts.values())
    assert top5(events) > 0.4 > top5(default_events)


def test_binge_large_has_a_large_catalogue_and_long_sessions():
    sim, events = _run("binge-large", users=200, days=30)
    assert len(sim.catalogue) == 1700
    _, default_events = _run("default", users=200, days=30)

    def per_session(evs):  # views of a user less than 15 minutes apart are one session
        last, runs, run = {}, [], defaultdict(int)
        for e in evs:
            if e.user_id in last and e.ts - last[e.user_id] > 15 * 60_000:
                runs.append(run.pop(e.user_id))
            run[e.user_id] += 1
            last[e.user_id] = e.ts
        return statistics.mean(runs)
    assert per_session(events) > 2 * per_session(default_events)


def test_mooc_one_free_course_per_user_most_drop_out():
    sim, events = _run("mooc", users=400, days=60)
    courses = defaultdict(set)
    for e in events:
        courses[e.user_id].add(e.course_id)
    assert max(len(c) for c in courses.values()) == 1
    assert not any(isinstance(e, Purchase) and e.course_id for e in events)
    users = sim.truth().users
    dropped = sum(u.churned_at is not None for u in users.values()) / len(users)
    assert 0.65 < dropped < 0.9
    active_days = defaultdict(set)
    for e in events:
        active_days[e.user_id].add(e.ts // 86_400_000)
    # the users who stay come on most days (the default platform: about twice a week)
    stayers = [len(active_days[u]) for u, t in users.items() if t.churned_at is None and u in active_days]
    assert statistics.median(stayers) > 10
