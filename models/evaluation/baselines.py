"""Churn baselines judged in the same replay as the model: recency-only risk and alert lift.

Plain functions over what the prequential replay recorded, so a report always puts the model
next to the simplest thing a platform could do instead:

- **recency baseline**: the risk of a snapshot is the days since the user's last event at the
  snapshot's time, scored on the same snapshots, with the same labels, as the model;
- **alert lift**: the share of alerts whose user churned within ``H`` of the alert time, over the
  base rate of the same label among every user snapshotted on the alert days (the users an alert
  could have gone to then). 1.0 is what alerting at random among them would give.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from models.evaluation.metrics import average_precision, roc_auc
from models.profile import DAY_MS

__all__ = ["alert_lift", "recency_baseline"]

#: did the user churn within the horizon after ``t``? None when the data cannot tell
LabelFn = Callable[[str, int], bool | None]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def recency_baseline(snapshots: Sequence[tuple[str, int, float]], recency_days: Sequence[float],
                     label: LabelFn) -> dict[str, Any]:
    """ROC and PR AUC of "days since the last event" as the risk, on the model's snapshots.

    ``recency_days[i]`` is the recency of ``snapshots[i]`` (same order); snapshots whose label
    cannot be known are left out, as they are for the model.

    >>> snaps = [("a", 0, 0.9), ("b", 0, 0.1), ("c", 0, 0.5)]
    >>> recency_baseline(snaps, [5.0, 0.0, 1.0], lambda u, t: u == "a")["roc_auc"]
    1.0
    """
    if len(snapshots) != len(recency_days):
        msg = f"one recency per snapshot expected, got {len(recency_days)} for {len(snapshots)}"
        raise ValueError(msg)
    y: list[bool] = []
    s: list[float] = []
    for (user, t, _), rec in zip(snapshots, recency_days, strict=True):
        lab = label(user, t)
        if lab is not None:
            y.append(lab)
            s.append(rec)
    return {"name": "days since the last event", "roc_auc": _round(roc_auc(y, s)),
            "pr_auc": _round(average_precision(y, s))}


def alert_lift(alerts: Iterable[tuple[str, int, Any]], snapshots: Sequence[tuple[str, int, Any]],
               label: LabelFn, days_active: int | None = None, recency_days: Sequence[float] | None = None,
               silent_days: float = 1.0) -> dict[str, Any]:
    """Precision of the alerts (churned within H of each alert time) over the base rate.

    The base rate of an alert's day is the positive rate of the label among the distinct users
    snapshotted that day (each at their first snapshot of the day); the overall base rate weighs
    the days by their alerts, so a policy that alerts on quiet days is compared with those days.
    Alerts whose label cannot be known (too close to the end of unlabelled data) are left out.
    ``days_active``: user-days with a snapshot over the whole replay (computed here when None),
    the denominator of ``alerts_per_active_user_day``. With ``recency_days`` (one per snapshot),
    also the stricter ``alert_lift_vs_silent``: the same precision over the base rate among the
    users of the alert day who had been silent at least ``silent_days`` (the users a silence
    alone would have flagged), so an alert that only says "this user is quiet" scores 1.0.

    >>> snaps = [("a", 0, 0.9), ("b", 0, 0.1), ("c", 0, 0.5), ("d", 0, 0.2)]
    >>> r = alert_lift([("a", 0, 0.9)], snaps, lambda u, t: u in ("a", "b"))
    >>> r["alert_precision"], r["base_rate"], r["alert_lift"]
    (1.0, 0.5, 2.0)
    """
    day_users: dict[int, dict[str, bool | None]] = defaultdict(dict)
    day_silent: dict[int, dict[str, bool | None]] = defaultdict(dict)
    for i, (user, t, _) in enumerate(snapshots):
        users = day_users[t // DAY_MS]
        if user not in users:
            users[user] = label(user, t)
        if recency_days is not None and recency_days[i] >= silent_days:
            silent = day_silent[t // DAY_MS]
            if user not in silent:
                silent[user] = label(user, t)
    n_days_active = sum(len(u) for u in day_users.values()) if days_active is None else days_active
    day_rate: dict[int, float | None] = {}
    silent_rate: dict[int, float | None] = {}
    hits = judged = 0
    base_sum = 0.0
    silent_hits = silent_judged = 0
    silent_sum = 0.0
    n_alerts = 0
    for user, t, _ in alerts:
        n_alerts += 1
        lab = label(user, t)
        day = t // DAY_MS
        if day not in day_rate:
            known = [v for v in day_users.get(day, {}).values() if v is not None]
            day_rate[day] = sum(known) / len(known) if known else None
        rate = day_rate[day]
        if lab is None or rate is None:
            continue
        if recency_days is not None:
            if day not in silent_rate:
                known = [v for v in day_silent.get(day, {}).values() if v is not None]
                silent_rate[day] = sum(known) / len(known) if known else None
            if silent_rate[day] is not None:
                silent_judged += 1
                silent_hits += lab
                silent_sum += silent_rate[day]  # type: ignore[operator]
        judged += 1
        hits += lab
        base_sum += rate
    precision = hits / judged if judged else None
    base = base_sum / judged if judged else None
    lift_silent = None
    if silent_judged and silent_sum:
        lift_silent = round((silent_hits / silent_judged) / (silent_sum / silent_judged), 3)
    return {
        "alert_lift_vs_silent": lift_silent,
        "silent_base_rate": _round(silent_sum / silent_judged) if silent_judged else None,
        "alerts_judged": judged,
        "alert_precision": _round(precision),
        "base_rate": _round(base),
        "alert_lift": round(precision / base, 3) if precision is not None and base else None,
        "alerts_per_active_user_day": round(n_alerts / n_days_active, 5) if n_days_active else None,
    }
