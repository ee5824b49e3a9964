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

__all__ = ["AlertPolicy", "SilenceScheduler"]

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

    def decide(self, user_id: str, risk: float, now: int) -> bool:
        """True when an alert must be sent for this risk at event time ``now`` (see class doc)."""
        entry = self._users.get(user_id)
        if entry is not None and entry[0]:
            if risk < self.release:
                entry[0] = False
                logger.debug("episode of %s closed: risk %.3f < %.3f", user_id, risk, self.release)
            return False
        if risk < self.threshold or (entry is not None and self._cooling(entry, now)):
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
