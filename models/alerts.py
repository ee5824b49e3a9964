"""When to check a silent user, and when a churn risk becomes an alert.

Plain objects, no Kafka; event time (epoch milliseconds) only. Per partition, an agent keeps::

    on each event of user u (after state.apply):   scheduler.touch(u, state.last_ts)
                                                   policy.on_activity(u, event.ts)
    when the watermark moves to w:                 for u in scheduler.due(w):
                                                       risk = churn.risk(state[u], w)
                                                       if policy.decide(u, risk, w): send alert
                                                       scheduler.reschedule(u, w + recheck)

:class:`SilenceScheduler` finds the users whose silence reached a check time without scanning
every user (DESIGN.md, "Time"); :class:`AlertPolicy` adds hysteresis and a cool-down so a user is
alerted once per episode of silence.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from models.churn import clone
from models.profile import DAY_MS

__all__ = ["AlertBudget", "AlertPolicy", "PlatformActivity", "SilenceScheduler"]

logger = logging.getLogger(__name__)


def _check_days(name: str, value: object, positive: bool = True) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        msg = f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}"
        raise ValueError(msg)


class SilenceScheduler:
    """Users ordered by their next check time: a heap with lazy deletion by per-user version.

    ``touch`` (re)schedules the first check at ``last_ts + first_check_days``; ``due(watermark)``
    pops the users whose check time is ``<= watermark``. Each operation is O(log n); ``due`` pops
    only due (or stale) entries, never scanning the users. Stale entries are compacted away when
    they outnumber the live ones. ``pops`` counts heap pops (work done), for tests and metrics.
    """

    def __init__(self, first_check_days: float = 3.0) -> None:
        _check_days("first_check_days", first_check_days)
        self.first_check_days = first_check_days
        #: user_id -> [seq of the live heap entry or 0, check time or None, last touched last_ts]
        self._users: dict[str, list[Any]] = {}
        #: (check time, seq, user_id)
        self._heap: list[tuple[int, int, str]] = []
        self._seq = 0
        self._live = 0
        self.pops = 0

    def clone(self) -> SilenceScheduler:
        return clone(self)

    def __len__(self) -> int:
        """Users with a check scheduled."""
        return self._live

    def scheduled_at(self, user_id: str) -> int | None:
        """The user's next check time, or None."""
        entry = self._users.get(user_id)
        return entry[1] if entry else None

    def touch(self, user_id: str, last_ts: int) -> None:
        """The user was active until ``last_ts``: first check at ``last_ts + first_check_days``.

        A ``last_ts`` not newer than the last one touched (a repeat, a late event) changes
        nothing, so a check already rescheduled by the caller stays.
        """
        entry = self._users.get(user_id)
        if entry is not None and last_ts <= entry[2]:
            return
        self._schedule(user_id, last_ts + int(self.first_check_days * DAY_MS), last_ts)

    def reschedule(self, user_id: str, at: int) -> None:
        """Check the user (again) at ``at``, replacing any scheduled check."""
        entry = self._users.get(user_id)
        self._schedule(user_id, at, entry[2] if entry else 0)

    def due(self, watermark: int) -> list[str]:
        """Pop and return the users whose check time is ``<= watermark``, earliest first."""
        out: list[str] = []
        heap, users = self._heap, self._users
        while heap and heap[0][0] <= watermark:
            _, seq, user_id = heapq.heappop(heap)
            self.pops += 1
            entry = users.get(user_id)
            if entry is None or entry[0] != seq:
                continue
            entry[0], entry[1] = 0, None
            self._live -= 1
            out.append(user_id)
        return out

    def forget(self, user_id: str) -> None:
        """Drop everything about the user (its heap entry becomes stale)."""
        entry = self._users.pop(user_id, None)
        if entry is not None and entry[1] is not None:
            self._live -= 1

    def _schedule(self, user_id: str, at: int, last_ts: int) -> None:
        entry = self._users.get(user_id)
        if entry is None:
            entry = self._users[user_id] = [0, None, last_ts]
        if entry[1] is None:
            self._live += 1
        self._seq += 1
        entry[0], entry[1], entry[2] = self._seq, at, last_ts
        heapq.heappush(self._heap, (at, self._seq, user_id))
        if len(self._heap) > 2 * self._live + 1024:
            self._compact()

    def _compact(self) -> None:
        self._heap = [(e[1], e[0], u) for u, e in self._users.items() if e[1] is not None]
        heapq.heapify(self._heap)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly checkpoint: the arguments and ``user_id -> [check time, last_ts]``."""
        return {
            "first_check_days": self.first_check_days,
            "users": {u: [e[1], e[2]] for u, e in self._users.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SilenceScheduler:
        new = cls(first_check_days=data["first_check_days"])
        for user_id, (at, last_ts) in data["users"].items():
            new._users[user_id] = [0, None, last_ts]
            if at is not None:
                new._schedule(user_id, at, last_ts)
        return new


class AlertPolicy:
    """Hysteresis and cool-down over a user's churn risk: one alert per episode of silence.

    ``decide`` says True exactly when ``risk >= threshold``, no episode is open and at least
    ``cooldown_days`` passed since the user's last alert; that opens an episode. The episode closes
    when the risk falls below ``release`` or when the user is active after the alert
    (``on_activity``); the next silence may alert again, once the cool-down has passed.

    Per-user state is kept only while it matters (open episode or cool-down running): ``prune``
    and ``forget`` drop the rest, ``to_dict``/``from_dict`` checkpoint it.
    """

    def __init__(
        self,
        threshold: float = 0.6,
        release: float = 0.4,
        cooldown_days: float = 7.0,
        discount_pct: int = 20,
    ) -> None:
        if not (isinstance(threshold, int | float) and 0 < threshold <= 1):
            msg = f"threshold must be in (0, 1], got {threshold!r}"
            raise ValueError(msg)
        if not (isinstance(release, int | float) and 0 <= release < threshold):
            msg = f"release must be in [0, threshold), got {release!r} (threshold {threshold!r})"
            raise ValueError(msg)
        _check_days("cooldown_days", cooldown_days, positive=False)
        if not (isinstance(discount_pct, int) and 0 < discount_pct < 100):
            msg = f"discount_pct must be an int in (0, 100), got {discount_pct!r}"
            raise ValueError(msg)
        self.threshold = threshold
        self.release = release
        self.cooldown_days = cooldown_days
        self.discount_pct = discount_pct
        #: user_id -> [episode open, event time of the last alert]
        self._users: dict[str, list[Any]] = {}

    def clone(self) -> AlertPolicy:
        return clone(self)

    def __len__(self) -> int:
        return len(self._users)

    def is_open(self, user_id: str) -> bool:
        entry = self._users.get(user_id)
        return bool(entry and entry[0])

    def last_alert_at(self, user_id: str) -> int | None:
        entry = self._users.get(user_id)
        return entry[1] if entry else None

    def _cooling(self, entry: list[Any], now: int) -> bool:
        return now - entry[1] < self.cooldown_days * DAY_MS

    def can_alert(self, user_id: str, now: int) -> bool:
        """No episode open and no cool-down running for the user at ``now``."""
        entry = self._users.get(user_id)
        return entry is None or (not entry[0] and not self._cooling(entry, now))

    def decide(self, user_id: str, risk: float, now: int, threshold: float | None = None,
               release: float | None = None) -> bool:
        """True when an alert must be sent for this risk at event time ``now`` (see class doc);
        ``threshold`` / ``release``: the ones in force now, when not the constructor's."""
        threshold = self.threshold if threshold is None else threshold
        release = self.release if release is None else release
        entry = self._users.get(user_id)
        if entry is not None and entry[0]:
            if risk < release:
                entry[0] = False
                logger.debug("episode of %s closed: risk %.3f < %.3f", user_id, risk, release)
            return False
        if risk < threshold or (entry is not None and self._cooling(entry, now)):
            return False
        self._users[user_id] = [True, now]
        return True

    def on_activity(self, user_id: str, t: int) -> None:
        """The user was active at ``t``: an episode opened before ``t`` closes."""
        entry = self._users.get(user_id)
        if entry is not None and entry[0] and t >= entry[1]:
            entry[0] = False

    def forget(self, user_id: str) -> None:
        self._users.pop(user_id, None)

    def prune(self, now: int) -> int:
        """Drop closed episodes whose cool-down is over (they change no decision); O(users).

        Call it rarely (e.g. hourly of event time); returns how many were dropped.
        """
        gone = [u for u, e in self._users.items() if not e[0] and not self._cooling(e, now)]
        for u in gone:
            del self._users[u]
        return len(gone)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly checkpoint: the arguments and ``user_id -> [open, last_alert_at]``."""
        return {
            "threshold": self.threshold,
            "release": self.release,
            "cooldown_days": self.cooldown_days,
            "discount_pct": self.discount_pct,
            "users": {u: list(e) for u, e in self._users.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertPolicy:
        new = cls(
            threshold=data["threshold"],
            release=data["release"],
            cooldown_days=data["cooldown_days"],
            discount_pct=data.get("discount_pct", 20),
        )
        new._users = {u: [bool(e[0]), e[1]] for u, e in data["users"].items()}
        return new

    def suggest_action(
        self,
        features: Mapping[str, float],
        factors: Sequence[Mapping[str, Any]],
        segment: str,
        recent_course: str | None = None,
        category: str | None = None,
    ) -> str:
        """A plain-language next step for an alerted user.

        ``features`` are the user's ``churn_features``, ``factors`` the model's top factors
        (``explain``), ``recent_course`` a course started and not finished (if any) and
        ``category`` the user's favourite category (if known).

        >>> AlertPolicy().suggest_action({"purchases_log": 0.0}, [], "at-risk", "Python 101")
        'remind to continue Python 101'
        """
        bought = features.get("purchases_log", 0.0) > 0
        where = f"in {category}" if category else "this week"
        if segment in ("dormant", "churned"):
            target = recent_course or (f"any course in {category}" if category else "any course")
            return f"win-back offer: {self.discount_pct}% off {target}"
        if recent_course:
            return f"remind to continue {recent_course}"
        if features.get("has_plan", 0.0) >= 1:
            return f"remind of the subscription: new courses {where} are included"
        top = next((f["name"] for f in factors if f.get("contribution", 0.0) > 0), None)
        if bought and top in ("days_since_purchase", "purchases_log"):
            return f"win-back offer: {self.discount_pct}% off the next course {where}"
        if category:
            return f"check in: new courses in {category}"
        return "check in: popular courses this week"


class AlertBudget:
    """Which at-risk users get an alert today: a threshold calibrated on resolved labels and a
    daily budget, highest risk first.

    - **Calibrated threshold**: from the model's own resolved ``(risk, label)`` pairs
      (:meth:`recalibrate`, e.g. ``OnlineClassifier.resolved``), the lowest risk above which the labels' precision reaches ``min_lift`` times
      their base rate (at least ``min_support`` pairs above it; a target above 1 is capped half
      way between the base rate and 1). Until ``min_support`` pairs resolved, the static
      threshold the caller passes stays.
    - **Budget**: at most ``share`` of the active users (at least one) are alerted per event-time
      day, the riskiest first. Checks come through the day a few users at a time, so "riskiest"
      is judged against the previous day's candidates: a candidate is taken when its risk is
      among the budget's worth of highest risks of yesterday (and room is left today).

    >>> b = AlertBudget(share=0.5)
    >>> b.take([("a", 0.9), ("b", 0.7), ("c", 0.8)], now=0, active_users=4)  # no yesterday yet
    ['a', 'c']
    >>> b.take([("d", 0.95)], now=1, active_users=4)  # the same day: the budget is spent
    []
    >>> b.take([("e", 0.85), ("f", 0.75)], now=86_400_000, active_users=4)  # yesterday's cut: 0.9
    []
    """

    def __init__(self, share: float = 0.02, min_lift: float = 1.5, min_support: int = 50) -> None:
        if not (isinstance(share, int | float) and 0 < share <= 1):
            msg = f"share must be in (0, 1], got {share!r}"
            raise ValueError(msg)
        if not (isinstance(min_lift, int | float) and min_lift >= 1):
            msg = f"min_lift must be a number >= 1, got {min_lift!r}"
            raise ValueError(msg)
        if not (isinstance(min_support, int) and min_support >= 1):
            msg = f"min_support must be an int >= 1, got {min_support!r}"
            raise ValueError(msg)
        self.share = share
        self.min_lift = min_lift
        self.min_support = min_support
        #: the calibrated threshold, None until enough labels resolved
        self.calibrated: float | None = None
        self._day = -1
        self._spent = 0
        #: candidates' risks today, and the lowest risk that made yesterday's budget
        self._risks: list[float] = []
        self._cut = 0.0

    def clone(self) -> AlertBudget:
        return clone(self)

    def recalibrate(self, resolved: Sequence[tuple[float, bool]]) -> float | None:
        """Calibrate the threshold on resolved ``(risk, label)`` pairs; returns it (None: too few).

        >>> b = AlertBudget(min_support=2)
        >>> b.recalibrate([(0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.2, False), (0.1, False)])
        0.6
        """
        self.calibrated = self._calibrate(resolved)
        return self.calibrated

    def _calibrate(self, resolved: Sequence[tuple[float, bool]]) -> float | None:
        pairs = sorted(((float(r), bool(y)) for r, y in resolved), reverse=True)
        n = len(pairs)
        if n < self.min_support:
            return None
        base = sum(y for _, y in pairs) / n
        if base <= 0:
            return None
        target = min(self.min_lift * base, base + (1.0 - base) / 2)
        hits = 0
        best = None
        for i, (risk, y) in enumerate(pairs, 1):
            hits += y
            if i >= self.min_support and hits / i >= target and (i == n or pairs[i][0] < risk):
                best = risk  # precision above this risk still reaches the target
        return best if best is not None else pairs[self.min_support - 1][0]

    def threshold(self, static: float) -> float:
        """The threshold in force: ``static``, raised to the calibrated one when that is higher
        (a calibrated threshold below it let through alerts at the base rate on OULAD)."""
        return static if self.calibrated is None else max(static, self.calibrated)

    def take(self, candidates: list[tuple[str, float]], now: int, active_users: int) -> list[str]:
        """The users of ``candidates`` (user, risk) to alert at ``now``, riskiest first."""
        day = now // DAY_MS
        budget = max(1, int(self.share * active_users))
        if day != self._day:
            self._cut = 0.0  # no candidates yesterday: no cut today
            if self._risks and day == self._day + 1:
                top = sorted(self._risks, reverse=True)
                self._cut = top[budget - 1] if len(top) >= budget else 0.0
            self._day, self._spent, self._risks = day, 0, []
        self._risks.extend(r for _, r in candidates)
        room = budget - self._spent
        if room <= 0 or not candidates:
            return []
        ranked = sorted((c for c in candidates if c[1] >= self._cut), key=lambda c: (-c[1], c[0]))
        chosen = [u for u, _ in ranked[:room]]
        self._spent += len(chosen)
        return chosen


class PlatformActivity:
    """Distinct active users per event-time day, to tell a user's silence from the platform's.

    A silence is the platform's own quiet when the days it spans (whole days after the user's
    last active day, up to yesterday) had fewer than ``quiet_ratio`` of the typical daily
    actives (the median over the ``baseline_days`` before the user's last active day):
    weekends on a weekday platform, term ends, the end of a file replayed. Days older than
    ``keep_days`` are dropped.

    >>> p = PlatformActivity()
    >>> for day in range(30):
    ...     for u in range(10 if day < 25 else 1):
    ...         p.active(f"u{u}", day * DAY_MS)
    >>> p.is_quiet(last_ts=24 * DAY_MS, now=29 * DAY_MS), p.is_quiet(last_ts=20 * DAY_MS, now=24 * DAY_MS)
    (True, False)
    """

    def __init__(self, quiet_ratio: float = 0.5, baseline_days: int = 28, keep_days: int = 120) -> None:
        if not (isinstance(quiet_ratio, int | float) and 0 < quiet_ratio < 1):
            msg = f"quiet_ratio must be in (0, 1), got {quiet_ratio!r}"
            raise ValueError(msg)
        if not (isinstance(baseline_days, int) and 1 <= baseline_days < keep_days):
            msg = f"baseline_days must be an int in [1, keep_days), got {baseline_days!r}"
            raise ValueError(msg)
        self.quiet_ratio = quiet_ratio
        self.baseline_days = baseline_days
        self.keep_days = keep_days
        self._counts: dict[int, int] = {}
        self._last_day: dict[str, int] = {}

    def clone(self) -> PlatformActivity:
        return clone(self)

    def active(self, user_id: str, ts: int) -> None:
        """The user did something at ``ts`` (counted once per user-day)."""
        day = ts // DAY_MS
        if self._last_day.get(user_id) == day:
            return
        self._last_day[user_id] = day
        if day not in self._counts:
            self._counts[day] = 0
            old = [d for d in self._counts if d < day - self.keep_days]
            for d in old:
                del self._counts[d]
        self._counts[day] += 1

    def forget(self, user_id: str) -> None:
        self._last_day.pop(user_id, None)

    def is_quiet(self, last_ts: int, now: int) -> bool:
        """Is the silence from ``last_ts`` to ``now`` the platform's own quiet?"""
        last, today = last_ts // DAY_MS, now // DAY_MS
        silent = [self._counts.get(d, 0) for d in range(last + 1, today)]
        if not silent:
            return False
        before = sorted(self._counts.get(d, 0) for d in range(last - self.baseline_days + 1, last + 1))
        typical = before[len(before) // 2]
        return typical > 0 and sum(silent) / len(silent) < self.quiet_ratio * typical
