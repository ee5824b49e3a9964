"""(h) Resident memory per 100k users of the worker's per-user structures, measured in a fresh interpreter."""

from __future__ import annotations

import gc
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

from streams.settings import Settings
from tools.bench.children import child_json
from tools.bench.config import _DAY_MS

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# (h) memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_memory(users: int = 100_000, events_per_user: int = 4, *, partitions: int = 12,
                 seed: int = 0) -> dict[str, Any]:
    """RSS growth from ``users`` users' worker-side state, scaled to 100k users.

    Per user, as a worker holds it: the ``users`` table entry (``UserState.to_bytes()``, as the
    in-memory store keeps it, after ``events_per_user`` simulator-like events) and the per-user part of the
    partition's :class:`models.retention.RetentionModels` (pending churn/repurchase snapshots,
    silence schedule, alert policy, cluster day). Measured with ``/proc/self/statm`` after
    ``gc.collect()``; run it in a fresh process for a clean baseline.
    """
    from models.profile import SegmentRules, UserState
    from models.retention import RetentionModels
    from schemas.events import Purchase, View

    if users < 1 or events_per_user < 1:
        msg = f"users and events_per_user must be >= 1, got {users}, {events_per_user}"
        raise ValueError(msg)
    s = Settings()
    rules = SegmentRules()
    rng = random.Random(seed)
    courses = [f"c{i:04d}" for i in range(1, 121)]
    t0 = 1_700_000_000_000

    def retention() -> RetentionModels:  # as streams.partition_models.new_retention() configures them
        return RetentionModels(horizon_days=s.churn_horizon_days, threshold=s.churn_threshold,
                               release=s.churn_release, cooldown_days=s.alert_cooldown_days,
                               first_check_days=s.first_check_days, rules=rules)

    models = [retention() for _ in range(partitions)]  # per-partition fixed cost, not per user
    warm = UserState("warm-up")
    warm.apply(View(event_id="w", user_id="warm-up", ts=t0, schema_version=1, course_id="c0001",
                    lesson_id="c0001-l01", watch_seconds=1.0, progress=0.1))
    models[0].observe(warm, t0, False, 100.0)
    models[0] = retention()
    del warm
    gc.collect()
    rss0 = _rss_bytes()
    started = time.perf_counter()

    table: dict[str, bytes] = {}
    n = 0
    for u in range(users):
        uid = f"u{u:07d}"
        state = UserState(uid)
        ts = t0 + rng.randrange(30 * _DAY_MS)
        course = rng.choice(courses)
        progress = 0.0
        for j in range(events_per_user):
            ts += rng.randrange(60_000, 2 * _DAY_MS)
            if j and rng.random() < 0.3:
                course, progress = rng.choice(courses), 0.0
            n += 1
            if rng.random() < 0.08:
                ev: Any = Purchase(event_id=f"e{seed}-{n:09d}", user_id=uid, ts=ts, schema_version=1, amount=99.0,
                                   currency="CNY", order_id=f"o{seed}-{n:08d}", course_id=course)
            else:
                progress = min(1.0, progress + rng.uniform(0.05, 0.3))
                ev = View(event_id=f"e{seed}-{n:09d}", user_id=uid, ts=ts, schema_version=1, course_id=course,
                          lesson_id=f"{course}-l{j + 1:02d}", watch_seconds=round(rng.uniform(60, 1500), 1),
                          progress=round(progress, 4))
            state.apply(ev, dedupe_window=s.dedupe_window, completion=rules.completion)
        state.partition = u % partitions
        table[uid] = state.to_bytes()
    gc.collect()
    rss1 = _rss_bytes()
    for raw in table.values():
        state = UserState.from_bytes(raw)
        models[state.partition].observe(state, state.last_ts, state.last_purchase_ts == state.last_ts, 150.0)
    gc.collect()
    rss2 = _rss_bytes()
    elapsed = time.perf_counter() - started
    mb = 1024 * 1024
    scale = 100_000 / users
    result = {
        "users": users,
        "events_per_user": events_per_user,
        "events": n,
        "partitions": partitions,
        "rss_before_mb": rss0 / mb,
        "rss_after_mb": rss2 / mb,
        "user_table_mb": (rss1 - rss0) / mb,
        "retention_mb": (rss2 - rss1) / mb,
        "rss_delta_mb": (rss2 - rss0) / mb,
        "bytes_per_user": (rss2 - rss0) / users,
        "mb_per_100k_users": (rss2 - rss0) / mb * scale,
        "user_table_mb_per_100k_users": (rss1 - rss0) / mb * scale,
        "retention_mb_per_100k_users": (rss2 - rss1) / mb * scale,
        "elapsed_s": elapsed,
        "method": "RSS (/proc/self/statm) after gc.collect(), before and after building the users table "
                  "(UserState.to_bytes per user) and the per-user part of RetentionModels.observe",
    }
    del table, models
    return result


def _memory_in_subprocess(users: int, events_per_user: int, workdir: Path, timeout: float = 600) -> dict[str, Any]:
    """:func:`bench_memory` in a fresh interpreter (nothing freed before it skews the RSS delta)."""
    return child_json(["memory", str(users), str(events_per_user)], workdir / f"memory-{users}-{events_per_user}.json",
                      timeout)
