"""(i) Cost against users and history: the one step's CPU per event and eval's events/s at 10k,
100k and 1M stored users, and on short against long per-user histories.

Each point runs in a fresh interpreter (:func:`scale_in_subprocess`):

1. A simulator platform of the point's history shape (``short``: 4,000 users over 14 days, ~8
   events a user; ``long``: 400 users over 150 days at 6 sessions a week, ~120 events a user,
   hundreds for the most active) is cut into a history and its last ``measured`` events.
2. ``coursepulse eval``'s evaluator (:func:`tools.evaluate.build_evaluator`, the worker's step,
   defaults and partitions) replays the history.
3. The stored population is padded to the point's user count with copies of the simulated
   users' states under new ids (as a worker holds a platform's registered users: most of them
   with no event in the window and no silence check due).
4. The last ``measured`` events are replayed, timed: wall-clock events/s and process CPU µs per
   event (the step, ranking, wording and eval's own bookkeeping, in one process).

What grows with the users stored (dict sizes, garbage-collector passes over live objects, any
scan of every user) shows as a higher cost per event at the same traffic; what grows with
history (bounded per-user structures) as a lower rate on the long file. Faust's and the
broker's per-message cost, measured in (b), does not depend on either.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any

from tools.bench.children import child_json
from tools.bench.evaluation import simulated_records

log = logging.getLogger(__name__)

#: history shape -> simulator fields (users, days and the rest; the seed is the run's)
HISTORIES: dict[str, dict[str, Any]] = {
    "short": {"users": 4000, "days": 14.0},
    "long": {"users": 400, "days": 150.0, "spw_median": 6.0, "churn_fraction": 0.0, "referrer_fraction": 0.0},
}
_START_MS = 1_735_689_600_000  # 2025-01-01, fixed: the same platform on every run


def _platform(history: str, seed: int, platform_users: int | None = None) -> tuple[list[Any], list[Any]]:
    from tools.simulator import SimConfig

    shape = dict(HISTORIES[history])
    if platform_users is not None:
        shape["users"] = platform_users
    return simulated_records(SimConfig(seed=seed, start_ms=_START_MS, **shape))


def bench_scale_point(users: int, history: str = "short", measured: int = 10_000, seed: int = 7,
                      platform_users: int | None = None) -> dict[str, Any]:
    """One point: ``users`` stored users, the ``history`` shape, ``measured`` timed events
    (``platform_users``: simulate that many instead of the shape's, for tests)."""
    return replay_point(users, history, measured, seed, platform_users)[1]


def replay_point(users: int, history: str, measured: int, seed: int,
                 platform_users: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The evaluator after the point's timed window, and the point's figures."""
    from models.profile import UserState
    from streams.settings import Settings
    from tools.evaluate import build_evaluator

    if history not in HISTORIES:
        msg = f"history must be one of {sorted(HISTORIES)}, got {history!r}"
        raise ValueError(msg)
    courses, events = _platform(history, seed, platform_users)
    if len(events) <= measured:
        msg = f"the {history} platform has {len(events)} events, not more than measured={measured}"
        raise ValueError(msg)
    past, window = events[:-measured], events[-measured:]
    evaluator = build_evaluator(Settings(), seed=seed)
    for course in courses:
        evaluator.add_course(course)
    started = time.perf_counter()
    evaluator.feed(past)
    history_s = time.perf_counter() - started
    simulated = len(evaluator.states)
    per_user = len(past) / max(simulated, 1)

    # pad the population: copies of the simulated users' states under ids of their own, in the
    # partition their id hashes to (the templates' bytes, decoded once each copy: no shared objects)
    if users < 1 or measured < 1:
        msg = f"users and measured must be >= 1, got {users}, {measured}"
        raise ValueError(msg)
    started = time.perf_counter()
    templates = [s.to_bytes() for s in evaluator.states.values()]
    gc.disable()  # a million new objects would set off full collections while they are made
    arriving = len({ev.user_id for ev in window} - evaluator.states.keys())  # first seen in the window
    for j in range(max(0, users - simulated - arriving)):
        state = UserState.from_bytes(templates[j % len(templates)])
        state.user_id = f"stored-{j:07d}"
        state.partition = evaluator.partition_of(state.user_id)
        evaluator.states[state.user_id] = state
    pad_s = time.perf_counter() - started
    gc.enable()
    gc.collect()

    cpu0, t0 = time.process_time(), time.perf_counter()
    evaluator.feed(window)
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - t0
    return evaluator, {
        "users": len(evaluator.states),
        "users_simulated": simulated,
        "history": history,
        "history_events": len(past),
        "history_events_per_simulated_user": round(per_user, 1),
        "measured_events": len(window),
        "events_per_s": len(window) / wall_s if wall_s > 0 else None,
        "cpu_us_per_event": cpu_s / len(window) * 1e6,
        "wall_s": wall_s,
        "history_replay_s": history_s,
        "pad_s": pad_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gc_collections": [g["collections"] for g in gc.get_stats()],
        "pid": os.getpid(),
    }


def scale_in_subprocess(users: int, history: str, measured: int, seed: int, workdir: Path,
                        timeout: float = 900) -> dict[str, Any]:
    """:func:`bench_scale_point` in a fresh interpreter (no other part's objects or memory)."""
    return child_json(["scale", str(users), history, str(measured), str(seed)],
                      workdir / f"scale-{users}-{history}.json", timeout)


def bench_scale(workdir: Path, users: tuple[int, ...] = (10_000, 100_000, 1_000_000), long_users: int = 10_000,
                measured: int = 10_000, seed: int = 7) -> dict[str, Any]:
    """Every point (short history at each of ``users``, long history at ``long_users``) and the
    two ratios the issue asks for."""
    points = [scale_in_subprocess(n, "short", measured, seed, workdir) for n in users]
    long = scale_in_subprocess(long_users, "long", measured, seed, workdir)
    by_users = {p["users"]: p for p in points}
    short_at_long = next((p for p in points if p["users"] == long["users"]), None)
    least, most = min(points, key=lambda p: p["users"]), max(points, key=lambda p: p["users"])
    out: dict[str, Any] = {
        "points": [*points, long],
        "eval_speed_ratio_long_history": (long["events_per_s"] / short_at_long["events_per_s"]
                                          if short_at_long and short_at_long["events_per_s"] else None),
        "cpu_ratio_most_to_least_users": most["cpu_us_per_event"] / least["cpu_us_per_event"],
        "most_users": most["users"], "least_users": least["users"],
        "method": "per point, a fresh process: the evaluator replays a simulated platform's history, the "
                  "stored users are padded with copies of its users' states, then its last events are "
                  "timed (process CPU and wall clock); see tools/bench/scale.py",
    }
    if 1_000_000 in by_users and 10_000 in by_users:
        out["worker_cpu_ratio_1m_to_10k_users"] = (by_users[1_000_000]["cpu_us_per_event"]
                                                   / by_users[10_000]["cpu_us_per_event"])
    return out
