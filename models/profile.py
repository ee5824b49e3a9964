"""Per-user state and the profile computed from it: activity, loyalty, RFM, lifecycle segment.

Plain objects, no Kafka: the live agent, offline replay and evaluation all run this code.
Everything is in event time (epoch milliseconds); nothing reads the wall clock.

The seed articles define activity = (logins + hours browsed + purchases + posts) / days and
loyalty = purchases x spend x hours / average lifetime value. With the events we have:
- logins -> sessions (a new session starts after 30 minutes without events),
- hours browsed -> hours watched (sum of ``watch_seconds``),
- posts -> shares,
- days -> tenure in days (first event to the watermark, at least 1),
- average lifetime value -> mean total spend of the paying users on the same partition
  (users are spread evenly over partitions, so this estimates the platform-wide mean).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from schemas.events import Event, Purchase, Share, View
from schemas.outputs import UserProfile

__all__ = ["DAY_MS", "FP_CHARS", "PartitionStats", "SegmentRules", "UserState", "build_profile", "event_fingerprint",
           "rfm_scores"]

DAY_MS = 86_400_000
SESSION_GAP_MS = 30 * 60 * 1000
RECENT_WINDOW = 64
SHORT_HL_DAYS = 3.0
LONG_HL_DAYS = 21.0


#: characters of one fingerprint in :attr:`UserState.seen`
FP_CHARS = 11


def event_fingerprint(event_id: str) -> str:
    """An event id's fingerprint in the de-duplication memory: 64 bits of its BLAKE2b hash as
    URL-safe base64 (11 characters). Two of the ``dedupe_window`` ids a user keeps collide, and
    a new event is taken for a repeat, with a probability of about window / 2**64 (1e-17).

    >>> event_fingerprint("e1"), len(event_fingerprint("a much longer event id, 1234567890"))
    ('G11eUfVPDwQ', 11)
    """
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=8).digest())[:FP_CHARS].decode()


def _decay_factors(dt_ms: int) -> tuple[float, float]:
    days = dt_ms / DAY_MS
    return 2.0 ** (-days / SHORT_HL_DAYS), 2.0 ** (-days / LONG_HL_DAYS)


@dataclass(frozen=True)
class SegmentRules:
    """Thresholds of the lifecycle segments, applied in this order.

    churned: inactive >= ``churned_days``; dormant: >= ``dormant_days``;
    at-risk: >= ``at_risk_days``; new: tenure < ``new_days``;
    loyal: >= ``loyal_purchases`` purchases and tenure >= ``loyal_tenure_days``; else active.
    """

    at_risk_days: float = 7.0
    dormant_days: float = 21.0
    churned_days: float = 45.0
    new_days: float = 14.0
    loyal_purchases: int = 2
    loyal_tenure_days: float = 30.0
    completion: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.at_risk_days < self.dormant_days < self.churned_days:
            msg = f"need 0 < at_risk_days < dormant_days < churned_days, got {self.at_risk_days}, {self.dormant_days}, {self.churned_days}"
            raise ValueError(msg)
        if not 0 < self.completion <= 1:
            msg = f"completion must be in (0, 1], got {self.completion}"
            raise ValueError(msg)

    def segment(self, days_inactive: float, tenure_days: float, purchases: int) -> str:
        """The lifecycle segment for these measures."""
        if days_inactive >= self.churned_days:
            return "churned"
        if days_inactive >= self.dormant_days:
            return "dormant"
        if days_inactive >= self.at_risk_days:
            return "at-risk"
        if tenure_days < self.new_days:
            return "new"
        if purchases >= self.loyal_purchases and tenure_days >= self.loyal_tenure_days:
            return "loyal"
        return "active"


@dataclass
class PartitionStats:
    """What a partition knows beyond single users: its event-time high mark and spend totals."""

    max_ts: int = 0
    buyers: int = 0
    spend: float = 0.0

    def watermark(self, lateness_ms: int) -> int:
        """Largest event time seen, less the allowed lateness."""
        return max(0, self.max_ts - lateness_ms)

    @property
    def avg_ltv(self) -> float:
        """Mean total spend of the paying users seen on this partition."""
        return self.spend / self.buyers if self.buyers else 0.0

    def observe(self, ts: int, amount: float = 0.0, new_buyer: bool = False) -> bool:
        """Fold in one event's time and spend; return True when ``max_ts`` moved."""
        self.spend += amount
        self.buyers += new_buyer
        if ts > self.max_ts:
            self.max_ts = ts
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PartitionStats:
        return cls(**data) if data else cls()


@dataclass
class UserState:
    """Everything kept per user. Stored in a changelog-backed table as a plain dict."""

    user_id: str
    first_ts: int = 0
    last_ts: int = 0
    views: int = 0
    purchases: int = 0
    shares: int = 0
    sessions: int = 0
    active_days: int = 0
    watch_s: float = 0.0
    spend: float = 0.0
    completed: int = 0
    last_purchase_ts: int = 0
    plan: str | None = None
    #: course_id -> [last_ts, max_progress, watch_s, purchased]; the most recent ``max_courses``
    courses: dict[str, list[Any]] = field(default_factory=dict)
    #: courses bought or completed, never to be recommended again (bounded)
    owned: list[str] = field(default_factory=list)
    #: the de-duplication memory: fingerprints (:func:`event_fingerprint`, FP_CHARS characters
    #: each) of the last ``dedupe_window`` applied events, oldest first, in one string: a repeat
    #: of one of them is dropped. 11 bytes an event, whatever the length of its id
    seen: str = ""
    #: the id of the latest applied event (the list owed after it is named after it)
    last_event_id: str | None = None
    #: recent event times and active days, sorted (bounded): sessions and days out of order
    recent_ts: list[int] = field(default_factory=list)
    recent_days: list[int] = field(default_factory=list)
    #: event-time decayed sums (half-lives SHORT_HL_DAYS / LONG_HL_DAYS) of watch seconds and
    #: events, as of ``decay_ts``: level and trend of activity for the churn features
    watch_short: float = 0.0
    watch_long: float = 0.0
    events_short: float = 0.0
    events_long: float = 0.0
    decay_ts: int = 0
    referred_by: str | None = None
    #: referral statistics of this user as a sharer (shares by channel, invitees, credited
    #: conversions, revenue, candidate cool-down); changed only through models.referrals
    referrals: dict[str, Any] = field(default_factory=dict)
    #: the input partition that owns this user (set by the worker; -1 offline)
    partition: int = -1
    rec_views: int = 0
    rec_purchases: int = 0
    #: the last published list: its signature (:func:`models.step.list_signature`, 0: none yet)
    #: and its event time; a list is published again only when it changed or aged
    rec_sig: int = 0
    rec_at: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The state as a plain dict (shallow: containers are shared, not copied)."""
        return {name: getattr(self, name) for name in _USER_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserState:
        """Inverse of :meth:`to_dict`; fields added since the dict was written take defaults, and
        a state written with the event ids themselves (``recent_ids``) is migrated."""
        if "recent_ids" in data:
            data = dict(data)
            ids = data.pop("recent_ids") or []
            data.setdefault("seen", "".join(map(event_fingerprint, ids)))
            data.setdefault("last_event_id", ids[-1] if ids else None)
        return cls(**data)

    def to_bytes(self) -> bytes:
        """The state as the ``users`` table keeps it: the JSON of :meth:`to_dict`. A worker holds
        these bytes, not the objects (a quarter of the memory), and the changelog carries them."""
        # copied to a bytes object of its own size: orjson's result keeps the whole buffer it
        # was written into (8 KB or more) allocated, whatever the JSON's length
        return memoryview(orjson.dumps(self.to_dict())).tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview | dict[str, Any]) -> UserState:
        """Inverse of :meth:`to_bytes`. A dict (a value kept as objects, as stores did before
        states were kept as bytes) is read as :meth:`from_dict`."""
        return cls.from_dict(raw if isinstance(raw, dict) else orjson.loads(raw))

    @staticmethod
    def partition_in(raw: bytes | bytearray | memoryview | dict[str, Any]) -> int:
        """The ``partition`` of a stored state without decoding it (a partition's users are
        found among every stored state when its models load: one decode each would cost the
        whole table per assigned partition).

        The JSON of :meth:`to_bytes` has ``partition`` after every field that can hold a key
        of the user's choosing (courses, channels), and only numbers after it: its last
        ``"partition":`` is the field. Anything else is decoded.
        """
        if isinstance(raw, dict):
            return int(raw.get("partition", -1))
        data = bytes(raw)
        i = data.rfind(b'"partition":')
        if i >= 0:
            i += 12
            end = i
            while end < len(data) and data[end] not in b",}":
                end += 1
            try:
                return int(data[i:end])
            except ValueError:
                pass
        return int(orjson.loads(data).get("partition", -1))

    def apply(
        self,
        event: Event,
        *,
        dedupe_window: int = 256,
        max_courses: int = 50,
        max_owned: int = 500,
        completion: float = 0.9,
    ) -> bool:
        """Fold one event into the state; return False (and change nothing) for a repeat."""
        fp = event_fingerprint(event.event_id)
        seen = self.seen
        i = seen.find(fp)
        while i >= 0:  # a match counts only where a fingerprint starts
            if i % FP_CHARS == 0:
                return False
            i = seen.find(fp, i + 1)
        seen += fp
        keep = dedupe_window * FP_CHARS
        self.seen = seen[len(seen) - keep:] if len(seen) > keep else seen
        self.last_event_id = event.event_id

        ts = event.ts
        if self.first_ts == 0 or ts < self.first_ts:
            self.first_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        self._count_session_and_day(ts)
        is_view = isinstance(event, View)
        self._decayed_add(ts, event.watch_seconds if is_view else 0.0)

        if is_view:
            self.views += 1
            self.watch_s += event.watch_seconds
            if event.rec_id is not None:
                self.rec_views += 1
            entry = self.courses.get(event.course_id)
            if entry is None:
                entry = self._course(event.course_id, ts, max_courses)
            elif ts > entry[0]:
                entry[0] = ts
            entry[2] += event.watch_seconds
            if event.progress > entry[1]:
                was_done = entry[1] >= completion
                entry[1] = event.progress
                if not was_done and event.progress >= completion:
                    self.completed += 1
                    self._own(event.course_id, max_owned)
        elif isinstance(event, Purchase):
            self.purchases += 1
            self.spend += event.amount
            self.last_purchase_ts = max(self.last_purchase_ts, ts)
            if event.rec_id is not None:
                self.rec_purchases += 1
            if event.share_id is not None and self.referred_by is None:
                self.referred_by = event.share_id
            if event.plan is not None:
                self.plan = event.plan
            if event.course_id is not None:
                self._course(event.course_id, ts, max_courses)[3] = 1
                self._own(event.course_id, max_owned)
        elif isinstance(event, Share):
            self.shares += 1
        return True

    def _decayed_add(self, ts: int, watch: float) -> None:
        if ts == self.decay_ts:  # activity_at(ts): factors of exactly 1.0
            self.watch_short += watch
            self.watch_long += watch
            self.events_short += 1.0
            self.events_long += 1.0
        elif ts > self.decay_ts:
            ws, wl, es, el = self.activity_at(ts)
            self.watch_short, self.watch_long = ws + watch, wl + watch
            self.events_short, self.events_long = es + 1.0, el + 1.0
            self.decay_ts = ts
        else:  # a late event: add it decayed to the state's reference time
            fs, fl = _decay_factors(self.decay_ts - ts)
            self.watch_short += watch * fs
            self.watch_long += watch * fl
            self.events_short += fs
            self.events_long += fl

    def activity_at(self, now: int) -> tuple[float, float, float, float]:
        """(watch_short, watch_long, events_short, events_long) decayed to event time ``now``."""
        fs, fl = _decay_factors(max(0, now - self.decay_ts))
        return self.watch_short * fs, self.watch_long * fl, self.events_short * fs, self.events_long * fl

    def _count_session_and_day(self, ts: int) -> None:
        """Sessions and active days, exact for events out of order within the recent window.

        Events of the three topics interleave in any order, so a session (events less than
        ``SESSION_GAP_MS`` apart) is tracked over the sorted recent event times: an event far from
        both neighbours opens a session; one that bridges two sessions merges them; one older
        than the whole (full) window opens none.
        """
        times = self.recent_ts
        i = bisect.bisect_left(times, ts)
        near_prev = i > 0 and ts - times[i - 1] <= SESSION_GAP_MS
        near_next = i < len(times) and times[i] - ts <= SESSION_GAP_MS
        # older than every remembered time of a full window (a record re-routed or redelivered
        # after the user's window moved on): its neighbours are forgotten, and a session usually
        # holds several events, so it is taken to belong to one already counted
        forgotten = i == 0 and len(times) >= RECENT_WINDOW
        if not near_prev and not near_next and not forgotten:
            self.sessions += 1
        elif near_prev and near_next and times[i] - times[i - 1] > SESSION_GAP_MS:
            self.sessions -= 1
        times.insert(i, ts)
        if len(times) > RECENT_WINDOW:
            del times[0]
        day = ts // DAY_MS
        days = self.recent_days
        j = bisect.bisect_left(days, day)
        if j == len(days) or days[j] != day:
            self.active_days += 1
            days.insert(j, day)
            if len(days) > RECENT_WINDOW:
                del days[0]

    def _course(self, course_id: str, ts: int, max_courses: int) -> list[Any]:
        entry = self.courses.get(course_id)
        if entry is None:
            entry = self.courses[course_id] = [ts, 0.0, 0.0, 0]
            if len(self.courses) > max_courses:
                oldest = min(self.courses, key=lambda c: self.courses[c][0])
                del self.courses[oldest]
        elif ts > entry[0]:
            entry[0] = ts
        return entry

    def _own(self, course_id: str, max_owned: int) -> None:
        if course_id not in self.owned:
            self.owned.append(course_id)
            if len(self.owned) > max_owned:
                del self.owned[0]

    def recent_courses(self, n: int = 10) -> list[str]:
        """Most recently touched courses, newest first."""
        return sorted(self.courses, key=lambda c: self.courses[c][0], reverse=True)[:n]


_USER_FIELDS = tuple(f.name for f in fields(UserState))


#: the default rules (frozen): one instance instead of a new one per profile
_DEFAULT_RULES = SegmentRules()


def rfm_scores(recency_days: float, purchases: int, spend: float, avg_ltv: float) -> str:
    """Recency, frequency and monetary scores 1..5 (5 best) as a 3-character string.

    >>> rfm_scores(1.0, 3, 500.0, 200.0)
    '545'
    """
    r = 5 if recency_days <= 3 else 4 if recency_days <= 7 else 3 if recency_days <= 14 else 2 if recency_days <= 30 else 1
    f = 1 if purchases == 0 else 2 if purchases == 1 else 3 if purchases == 2 else 4 if purchases <= 4 else 5
    if spend <= 0:
        m = 1
    elif avg_ltv <= 0:
        m = 3
    else:
        ratio = spend / avg_ltv
        m = 2 if ratio < 0.5 else 3 if ratio < 1.0 else 4 if ratio < 2.0 else 5
    return f"{r}{f}{m}"


def build_profile(
    state: UserState,
    watermark_ms: int,
    avg_ltv: float,
    rules: SegmentRules | None = None,
    extra: dict[str, Any] | None = None,
) -> UserProfile:
    """The published profile of a user as of the partition's watermark."""
    rules = rules or _DEFAULT_RULES
    now = max(watermark_ms, state.last_ts)
    recency_days = max(0.0, (watermark_ms - state.last_ts) / DAY_MS)
    tenure_days = max(0.0, (now - state.first_ts) / DAY_MS)
    hours = state.watch_s / 3600.0
    activity = (state.sessions + hours + state.purchases + state.shares) / max(tenure_days, 1.0)
    loyalty = state.purchases * state.spend * hours / avg_ltv if avg_ltv > 0 else 0.0
    return UserProfile(
        user_id=state.user_id,
        segment=rules.segment(recency_days, tenure_days, state.purchases),
        activity=round(activity, 4),
        loyalty=round(loyalty, 4),
        recency_days=round(recency_days, 3),
        rfm=rfm_scores(recency_days, state.purchases, state.spend, avg_ltv),
        views=state.views,
        purchases=state.purchases,
        shares=state.shares,
        sessions=state.sessions,
        active_days=state.active_days,
        watch_hours=round(hours, 3),
        completed_courses=state.completed,
        spend=round(state.spend, 2),
        tenure_days=round(tenure_days, 3),
        first_ts=state.first_ts,
        last_ts=state.last_ts,
        recent_courses=state.recent_courses(),
        updated_at=now,
        extra=extra or {},
    )
