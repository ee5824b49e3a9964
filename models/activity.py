"""Activity-log features of dropout studies: active days in sliding windows, their trend, gaps,
weekday regularity, the silence against the user's own pace, course progress.

Plain functions of a :class:`models.profile.UserState` (its sorted ``recent_days``: the last
``RECENT_WINDOW`` active days) and an event time; nothing is stored beyond what the state keeps,
so the live worker and replay compute the same values. The churn model uses them beside
:func:`models.churn.churn_features` (``ChurnModel.features``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

from models.profile import DAY_MS, UserState

__all__ = ["ACTIVITY_FEATURES", "ACTIVITY_FEATURE_NAMES", "activity_feature_rows", "activity_features"]

#: caps of the day-valued features
GAP_CAP_DAYS = 90.0
MISSED_CAP = 30.0
#: epoch day 0 (1970-01-01) was a Thursday: (day + 3) % 7 is the weekday, Monday = 0
_EPOCH_WEEKDAY = 3

ACTIVITY_FEATURES: dict[str, str] = {
    "active_days_7": "active days in the 7 days up to now (today included)",
    "active_days_28": "active days in the 28 days up to now",
    "active_trend": "(active days in the last 14 days - in the 14 before) / (both + 1), in (-1, 1)",
    "active_share": "active days / days of tenure (lifetime), in [0, 1]",
    "gap_mean_days": f"mean gap between the recent active days, capped at {GAP_CAP_DAYS:g}",
    "gap_max_days": f"longest gap between the recent active days, capped at {GAP_CAP_DAYS:g}",
    "silence_over_gap": "log1p of days since the last active day over the longest recent gap + 1",
    "missed_expected": "active days the user's weekday pattern expected since the last active day "
    f"(capped at {MISSED_CAP:g})",
    "weekday_regularity": "1 - normalised entropy of the recent active days' weekdays: 0 any day, 1 one weekday",
    "progress_recent": "progress (0..1) of the most recently touched course",
}
ACTIVITY_FEATURE_NAMES: tuple[str, ...] = tuple(ACTIVITY_FEATURES)

_LOG7 = math.log(7.0)


def activity_features(state: UserState, now: int) -> dict[str, float]:
    """:data:`ACTIVITY_FEATURES` of the user as of event time ``now``; finite floats only.

    >>> s = UserState("u", first_ts=0, last_ts=2 * DAY_MS, active_days=3, recent_days=[0, 1, 2])
    >>> x = activity_features(s, 2 * DAY_MS)
    >>> x["active_days_7"], x["gap_max_days"], x["silence_over_gap"]
    (3.0, 1.0, 0.0)
    """
    return activity_feature_rows(state, (now,))[0]


def activity_feature_rows(state: UserState, times: Iterable[int]) -> list[dict[str, float]]:
    """:func:`activity_features` at each time of ``times``; the time-invariant parts once."""
    days = state.recent_days
    n = len(days)
    if n >= 2:
        gaps = [b - a for a, b in zip(days, days[1:], strict=False)]
        gap_mean = min(GAP_CAP_DAYS, sum(gaps) / len(gaps))
        gap_max = min(GAP_CAP_DAYS, float(max(gaps)))
    else:
        gap_mean = gap_max = 0.0
    hist = [0] * 7
    for d in days:
        hist[(d + _EPOCH_WEEKDAY) % 7] += 1
    if n >= 3:
        ent = -sum(c / n * math.log(c / n) for c in hist if c)
        regularity = 1.0 - ent / _LOG7
    else:
        regularity = 0.0
    # per weekday: chance of being active that day, over the weeks the recent window spans
    weeks = max(1.0, (days[-1] - days[0] + 1) / 7.0) if n else 1.0
    p_weekday = [min(1.0, c / weeks) for c in hist]
    last_day = days[-1] if n else None
    first_ts = state.first_ts
    lifetime_days = state.active_days
    progress = 0.0
    if state.courses:
        recent = max(state.courses.values(), key=lambda e: e[0])
        progress = float(min(1.0, max(0.0, recent[1])))
    rows = []
    for now in times:
        today = now // DAY_MS
        hi = bisect.bisect_right(days, today)
        a7 = hi - bisect.bisect_right(days, today - 7)
        a14 = hi - bisect.bisect_right(days, today - 14)
        a28 = hi - bisect.bisect_right(days, today - 28)
        p14 = a28 - a14
        tenure = max(1.0, (now - first_ts) / DAY_MS + 1.0) if first_ts else 1.0
        if last_day is not None and today > last_day:
            silent = today - last_day
            missed = 0.0
            for d in range(last_day + 1, min(today, last_day + 31) + 1):
                missed += p_weekday[(d + _EPOCH_WEEKDAY) % 7]
        else:
            silent = 0
            missed = 0.0
        rows.append({
            "active_days_7": float(a7),
            "active_days_28": float(a28),
            "active_trend": (a14 - p14) / (a14 + p14 + 1.0),
            "active_share": min(1.0, lifetime_days / tenure),
            "gap_mean_days": gap_mean,
            "gap_max_days": gap_max,
            "silence_over_gap": math.log1p(silent / (gap_max + 1.0)),
            "missed_expected": min(MISSED_CAP, missed),
            "weekday_regularity": regularity,
            "progress_recent": progress,
        })
    return rows
