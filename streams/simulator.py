"""A seeded, deterministic simulator of a paid-course platform's event stream and its ground truth."""

from __future__ import annotations

import csv
import heapq
import logging
import math
import random
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from schemas.base import format_ts, parse_ts
from schemas.eventfile import read_events, write_events
from schemas.events import SHARE_CHANNELS, Course, Purchase, Share, View

__all__ = [
    "CATEGORIES",
    "PLAN_PRICES",
    "PROFILES",
    "CourseTruth",
    "PlatformSimulator",
    "SimConfig",
    "SimTruth",
    "UserTruth",
    "profile_config",
    "read_jsonl",
    "read_truth",
    "write_jsonl",
    "write_truth",
]

log = logging.getLogger(__name__)

_Record = View | Purchase | Share | Course

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
_MAX_TS = 10**14  # schemas.base.parse_ts bound
_LOCAL_OFFSET_MS = 8 * HOUR_MS  # the platform's users live in UTC+8 (diurnal and weekly rhythm)

# ---------------------------------------------------------------------------------------------
# the catalogue's vocabulary

#: category -> (share of the catalogue, subjects as (title word, tag), title patterns as (template, tags))
CATEGORIES: dict[str, tuple[float, list[tuple[str, str]], list[tuple[str, tuple[str, ...]]]]] = {
    "programming": (
        0.20,
        [("Python", "python"), ("JavaScript", "javascript"), ("Go", "go"), ("Rust", "rust"),
         ("Java", "java"), ("C++", "cpp"), ("TypeScript", "typescript"), ("Kotlin", "kotlin"),
         ("SQL", "sql"), ("Swift", "swift")],
        [("{s} for Beginners", ("beginner",)), ("Advanced {s}", ("advanced",)),
         ("{s} in Practice", ("projects",)), ("Web Development with {s}", ("web", "backend")),
         ("{s} Concurrency Deep Dive", ("concurrency", "advanced")),
         ("Building APIs with {s}", ("api", "backend")), ("Testing {s} Applications", ("testing",)),
         ("Algorithms and Data Structures in {s}", ("algorithms", "interview"))],
    ),
    "data-science": (
        0.16,
        [("Python", "python"), ("R", "r"), ("Pandas", "pandas"), ("Machine Learning", "machine-learning"),
         ("Deep Learning", "deep-learning"), ("Statistics", "statistics"), ("PyTorch", "pytorch"),
         ("Data Visualization", "visualization"), ("NLP", "nlp"), ("SQL", "sql")],
        [("{s} for Data Analysis", ("analysis",)), ("Practical {s}", ("projects",)),
         ("{s} from Scratch", ("beginner",)), ("Applied {s} for Business", ("business-analytics",)),
         ("{s} Bootcamp", ("bootcamp",)), ("Hands-on {s} Projects", ("projects",)),
         ("{s}: Zero to Hero", ("beginner", "career"))],
    ),
    "design": (
        0.10,
        [("Figma", "figma"), ("UI Design", "ui"), ("UX Research", "ux"), ("Typography", "typography"),
         ("Illustrator", "illustrator"), ("Photoshop", "photoshop"), ("Branding", "branding"),
         ("Motion Design", "motion"), ("Color Theory", "color")],
        [("{s} Fundamentals", ("beginner",)), ("{s} Masterclass", ("advanced",)),
         ("{s} for Product Designers", ("product",)), ("Mastering {s}", ("advanced",)),
         ("{s} Portfolio Projects", ("portfolio", "projects"))],
    ),
    "business": (
        0.13,
        [("Project Management", "project-management"), ("Excel", "excel"),
         ("Financial Modeling", "finance"), ("Leadership", "leadership"), ("Negotiation", "negotiation"),
         ("Startup Strategy", "startup"), ("Product Management", "product"), ("Accounting", "accounting"),
         ("PowerPoint", "presentation")],
        [("{s} Essentials", ("beginner",)), ("{s} for Managers", ("management",)),
         ("{s} in 30 Days", ("quick-start",)), ("Practical {s}", ("practical",)),
         ("Advanced {s}", ("advanced",))],
    ),
    "languages": (
        0.14,
        [("English", "english"), ("Japanese", "japanese"), ("Korean", "korean"), ("French", "french"),
         ("Spanish", "spanish"), ("German", "german"), ("Business English", "business-english"),
         ("Cantonese", "cantonese")],
        [("{s} for Beginners", ("beginner",)), ("Conversational {s}", ("speaking",)),
         ("{s} Grammar Made Simple", ("grammar",)), ("{s} Pronunciation Workshop", ("pronunciation",)),
         ("Everyday {s}", ("speaking", "daily")), ("{s} Exam Preparation", ("exam",))],
    ),
    "music": (
        0.09,
        [("Guitar", "guitar"), ("Piano", "piano"), ("Ukulele", "ukulele"), ("Singing", "singing"),
         ("Music Theory", "theory"), ("Music Production", "production"), ("Drums", "drums"),
         ("Songwriting", "songwriting"), ("Guzheng", "guzheng")],
        [("{s} for Absolute Beginners", ("beginner",)), ("{s} Fundamentals", ("beginner",)),
         ("Intermediate {s}", ("intermediate",)), ("{s} Masterclass", ("advanced",)),
         ("Learn {s} in 8 Weeks", ("quick-start",))],
    ),
    "photography": (
        0.07,
        [("Portrait Photography", "portrait"), ("Smartphone Photography", "smartphone"),
         ("Lightroom", "lightroom"), ("Street Photography", "street"),
         ("Landscape Photography", "landscape"), ("Studio Lighting", "lighting"),
         ("Photo Editing", "editing"), ("Product Photography", "product-photo")],
        [("{s} Essentials", ("beginner",)), ("{s}: From Basics to Pro", ("beginner", "advanced")),
         ("Creative {s}", ("creative",)), ("{s} Workshop", ("practical",)), ("Mastering {s}", ("advanced",))],
    ),
    "marketing": (
        0.11,
        [("SEO", "seo"), ("Social Media Marketing", "social-media"), ("Content Marketing", "content"),
         ("Email Marketing", "email-marketing"), ("Growth Hacking", "growth"), ("Copywriting", "copywriting"),
         ("Brand Strategy", "brand"), ("Douyin Marketing", "douyin"), ("Xiaohongshu Marketing", "xiaohongshu"),
         ("Marketing Analytics", "analytics")],
        [("{s} Fundamentals", ("beginner",)), ("The {s} Playbook", ("practical",)),
         ("{s} for Small Businesses", ("small-business",)), ("Data-Driven {s}", ("analytics",)),
         ("Advanced {s}", ("advanced",))],
    ),
}
_CAT_NAMES = list(CATEGORIES)
_CAT_SHARE = [CATEGORIES[c][0] for c in _CAT_NAMES]

#: list prices (currency units) and how common each is; 0 = free course
_PRICE_POINTS = (0, 49, 69, 99, 129, 149, 199, 249, 299, 399, 499, 699, 999)
_PRICE_WEIGHTS = (10, 9, 8, 15, 10, 10, 12, 7, 7, 4, 4, 2, 1)
_DISCOUNTS = (0.5, 0.7, 0.8, 0.85, 0.9)
#: subscription plans: price and how long they unlock every course
PLAN_PRICES: dict[str, float] = {"monthly": 129.0, "annual": 999.0}
_PLAN_DAYS = {"monthly": 30, "annual": 365}

#: share channel -> (how often chosen, most invitees one share can bring, invitee conversion factor)
_CHANNELS: dict[str, tuple[float, int, float]] = {
    "wechat_moments": (0.25, 5, 0.8),
    "wechat_group": (0.20, 5, 1.0),
    "wechat_friend": (0.20, 2, 1.4),
    "link": (0.10, 3, 0.9),
    "email": (0.04, 1, 1.2),
    "weibo": (0.08, 4, 0.7),
    "qq": (0.10, 3, 1.0),
    "other": (0.03, 1, 0.9),
}
assert set(_CHANNELS) == set(SHARE_CHANNELS)
_CH_NAMES = list(_CHANNELS)
_CH_CUM = list(accumulate(v[0] for v in _CHANNELS.values()))

# relative session intensity by local hour (normalised to mean 1 below), and weekend uplift
_HOURLY = (0.5, 0.25, 0.12, 0.08, 0.06, 0.08, 0.2, 0.45, 0.6, 0.65, 0.7, 0.75,
           0.95, 0.8, 0.7, 0.7, 0.75, 0.8, 0.9, 1.1, 1.35, 1.45, 1.2, 0.85)
_mean_h = sum(_HOURLY) / 24
_DIURNAL = tuple(h / _mean_h for h in _HOURLY)
_WEEKDAY = (1.0, 1.0, 1.0, 1.0, 1.0, 1.25, 1.25)  # Monday..Sunday
_mean_w = sum(_WEEKDAY) / 7
_WEEKDAY = tuple(w / _mean_w for w in _WEEKDAY)
# relative intensity by local hour of the week (epoch day 0, 1970-01-01, was a Thursday), over its peak
_HOW = [_DIURNAL[h % 24] * _WEEKDAY[(h // 24 + 3) % 7] for h in range(168)]
_RHYTHM_PEAK = max(_HOW)
_RHYTHM = tuple(x / _RHYTHM_PEAK for x in _HOW)
_WEEK_FACTOR_CAP = 2.5  # cap of a user's week-to-week activity factor (gamma, mean ~1)

# behaviour knobs (documented in the README)
_PRESENT_AT_START = 0.65      # share of `users` already signed up at the start
_CONTINUE_P = 0.8             # a session continues a course in progress (else discovers one)
_RECENT_COURSE_P = 0.15       # a discovery looks at recently published courses first
_MAX_ACTIVE = 5               # courses in progress at once; the oldest is dropped beyond that
_BREAK_P = 0.05               # after a session, chance of a break of 2-7 days
_PLAN_SHARE_P = 0.06          # at a paywall, an active learner may subscribe instead of buying
_REFERRER_CONVERSION = 0.5    # invitee of a natural referrer buys the shared course
_OTHER_CONVERSION = 0.1       # invitee of anyone else buys the shared course


# ---------------------------------------------------------------------------------------------
# configuration and ground truth


def _check_number(name: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> None:
    ok_types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        kind = "an integer" if integer else "a number"
        msg = f"{name} must be {kind}, got {type(value).__name__}"
        raise ValueError(msg)
    if not math.isfinite(value) or not lo <= value <= hi:
        msg = f"{name} must be in [{lo}, {hi}], got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: how many users and courses, for how long, from when, with which seed."""

    users: int = 2000  # users present at start or signing up during the period (invitees come on top)
    courses: int = 120
    days: float = 60.0
    start_ms: int | None = None  # start of simulated time; None -> (now - days) floored to a UTC midnight
    seed: int = 7
    churn_fraction: float = 0.3  # share of users who drift away and go silent during the period
    referrer_fraction: float = 0.1  # share of "natural referrers" who share a lot and whose invitees convert
    currency: str = "CNY"
    # the platform's shape: the defaults are the paid-course platform; PROFILES holds others
    popularity_sigma: float = 1.1  # spread (lognormal sigma) of the courses' latent popularity
    interest_weight: float = 1.0  # share of discoveries that follow the user's interests (else what is popular)
    spw_median: float = 2.2  # median sessions per week of a user
    views_continue_p: float = 0.55  # after a lesson, chance the session goes on to the next
    max_views: int = 8  # most lessons of one course viewed in a session
    courses_per_session: int = 1  # most courses viewed in one session (binge sessions: more)
    burst_p: float = 0.0  # after a session, chance the next one follows within the hour (bursts)
    max_courses_per_user: int = 0  # courses a user ever enrols in (0: no limit; a MOOC: 1)
    max_lessons: int = 30  # lessons of the longest course
    free_courses: bool = False  # every course free: no paywall, no course purchases

    def __post_init__(self) -> None:
        _check_number("users", self.users, 1, 10_000_000, integer=True)
        _check_number("courses", self.courses, 1, 99_999, integer=True)
        _check_number("days", self.days, 0.01, 3650)
        _check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
        _check_number("churn_fraction", self.churn_fraction, 0.0, 1.0)
        _check_number("referrer_fraction", self.referrer_fraction, 0.0, 1.0)
        _check_number("popularity_sigma", self.popularity_sigma, 0.0, 5.0)
        _check_number("interest_weight", self.interest_weight, 0.0, 1.0)
        _check_number("spw_median", self.spw_median, 0.15, 25.0)
        _check_number("views_continue_p", self.views_continue_p, 0.0, 0.99)
        _check_number("max_views", self.max_views, 1, 200, integer=True)
        _check_number("courses_per_session", self.courses_per_session, 1, 20, integer=True)
        _check_number("burst_p", self.burst_p, 0.0, 0.95)
        _check_number("max_courses_per_user", self.max_courses_per_user, 0, 10_000, integer=True)
        _check_number("max_lessons", self.max_lessons, 5, 500, integer=True)
        if self.start_ms is not None:
            _check_number("start_ms", self.start_ms, 0, _MAX_TS - 1 - self.days_ms, integer=True)
        if not isinstance(self.currency, str) or not re.fullmatch(r"[A-Z]{3}", self.currency):
            msg = f"currency must be a three-letter upper-case ISO-4217 code, got {self.currency!r}"
            raise ValueError(msg)

    @property
    def days_ms(self) -> int:
        """Length of the simulated period in milliseconds."""
        return int(round(self.days * DAY_MS))


@dataclass
class UserTruth:
    """What the simulator knows about a user and a model can only infer from events."""

    user_id: str
    joined_at: int
    interests: dict[str, float]  # category -> weight, sums to 1
    churned_at: int | None  # the user's last event, for users who went silent for good; else None
    drift_start: int | None  # when their activity started to decline (churners only)
    is_referrer: bool
    invited_by_share: str | None
    sessions_per_week: float = 0.0
    completion_propensity: float = 0.0
    price_sensitivity: float = 0.0
    events: int = 0  # events this user produced


@dataclass
class CourseTruth:
    """Latent course attributes that are not on the ``courses`` topic."""

    course_id: str
    category: str
    popularity: float
    lessons: int
    free_lessons: int
    published_at: int


@dataclass
class SimTruth:
    """Ground truth of one simulated run (complete once ``events()`` has been exhausted)."""

    users: dict[str, UserTruth]  # every user incl. invitees
    courses: dict[str, CourseTruth] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int = 0
    complete: bool = True


# ---------------------------------------------------------------------------------------------
# internal state


class _Course:
    __slots__ = ("cat", "course_id", "free_lessons", "lesson_ids", "lesson_secs", "lessons",
                 "popularity", "price", "published_at", "record")

    def __init__(self, record: Course, popularity: float, lesson_secs: list[float], free_lessons: int) -> None:
        self.record = record
        self.course_id = record.course_id
        self.cat = record.category
        self.price = record.price
        self.published_at = record.published_at
        self.popularity = popularity
        self.lesson_secs = lesson_secs
        self.lessons = len(lesson_secs)
        self.lesson_ids = [f"{record.course_id}-l{i + 1:02d}" for i in range(self.lessons)]
        self.free_lessons = free_lessons


class _Enrolment:
    __slots__ = ("done", "owned", "progress", "shared_half")

    def __init__(self) -> None:
        self.done = 0  # lessons fully watched, in order
        self.progress = 0.0
        self.owned = False
        self.shared_half = False


class _User:
    __slots__ = ("active", "break_until", "cats", "completion", "cum", "drift_forced", "drift_start",
                 "enrolments", "interests", "invited_by", "is_referrer", "joined_at", "last_ts",
                 "n_events", "plan", "plan_until", "price_sens", "rate", "spw", "stop_at", "user_id",
                 "week", "week_factor")

    def __init__(self, user_id: str, joined_at: int, interests: dict[str, float], spw: float,
                 completion: float, price_sens: float, is_referrer: bool, invited_by: str | None) -> None:
        self.user_id = user_id
        self.joined_at = joined_at
        self.interests = interests
        self.cats = list(interests)
        self.cum = list(accumulate(interests.values()))
        self.spw = spw
        self.rate = spw / WEEK_MS  # sessions per millisecond
        self.completion = completion
        self.price_sens = price_sens
        self.is_referrer = is_referrer
        self.invited_by = invited_by
        self.drift_start: int | None = None
        self.stop_at: int | None = None
        self.drift_forced = False
        self.enrolments: dict[str, _Enrolment] = {}
        self.active: list[str] = []  # courses in progress, most recently touched last
        self.plan: str | None = None
        self.plan_until = 0
        self.break_until = 0
        self.week = -1
        self.week_factor = 1.0
        self.last_ts: int | None = None
        self.n_events = 0


def _interests(weights: Iterable[float]) -> dict[str, float]:
    """Category weights with negligible ones dropped, renormalised to sum to 1."""
    kept = {c: float(w) for c, w in zip(_CAT_NAMES, weights, strict=True) if w >= 0.002}
    if not kept:  # pragma: no cover - a Dirichlet row always has a weight >= 1/8
        kept = {_CAT_NAMES[0]: 1.0}
    total = sum(kept.values())
    return {c: w / total for c, w in kept.items()}


# heap entry codes
_EMIT, _SESSION, _ARRIVE, _PUBLISH = 0, 1, 2, 3


class _Run:
    """One pass of the simulation: its own RNGs and state, so every ``events()`` call is identical."""

    def __init__(self, sim: PlatformSimulator) -> None:
        cfg = sim.config
        self.sim = sim
        self.cfg = cfg
        self.seed = cfg.seed
        self.start = sim.start_ms
        self.end = sim.end_ms
        self.currency = cfg.currency
        self.rng = random.Random(f"coursepulse-sim:{cfg.seed}:run")
        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.n_events = 0
        self.n_orders = 0
        self.n_shares = 0
        self.users: list[_User] = []
        self.courses = sim._courses
        self.by_id = {c.course_id: c for c in self.courses}
        self.recent: list[_Course] = []  # courses published during the period so far
        self.counts: dict[str, int] = {"view": 0, "purchase": 0, "share": 0, "course": 0}
        self.exhausted = False
        # discovery pools: category -> (courses, cumulative popularity)
        self.pools: dict[str | None, tuple[list[_Course], list[float]]] = {}
        for cat in [*_CAT_NAMES, None]:
            members = [c for c in self.courses if cat is None or c.cat == cat]
            self.pools[cat] = (members, list(accumulate(c.popularity for c in members)))
        decay_scale = min(1.0, cfg.days / 42.0)
        self.decay_lo = 7 * DAY_MS * decay_scale
        self.decay_hi = 21 * DAY_MS * decay_scale
        self.tail = min(3 * DAY_MS, 0.1 * cfg.days_ms)  # churners stop at least this long before the end
        self._init_users()

    # -- setup -----------------------------------------------------------------------------

    def _init_users(self) -> None:
        cfg = self.cfg
        n = cfg.users
        nrng = np.random.default_rng([cfg.seed, 11])
        present = nrng.random(n) < _PRESENT_AT_START
        tenure = nrng.exponential(150 * DAY_MS, n)
        signup = self.start + nrng.random(n) * (self.end - self.start)
        # interests: Dirichlet concentrated on 1-3 categories (row-normalised gammas)
        k = nrng.choice([1, 2, 3], size=n, p=[0.35, 0.45, 0.2])
        alpha = np.full((n, len(_CAT_NAMES)), 0.05)
        cat_p = np.array(_CAT_SHARE) / sum(_CAT_SHARE)
        for i in range(n):
            chosen = nrng.choice(len(_CAT_NAMES), size=k[i], replace=False, p=cat_p)
            alpha[i, chosen] = 2.0
        g = nrng.gamma(alpha)
        g = g / g.sum(axis=1, keepdims=True)
        spw = np.clip(nrng.lognormal(math.log(cfg.spw_median), 0.75, n), 0.15, 25.0)
        completion = nrng.beta(2.0, 2.5, n)
        price_sens = nrng.beta(2.0, 2.0, n)
        referrers = np.zeros(n, dtype=bool)
        referrers[nrng.permutation(n)[: int(round(cfg.referrer_fraction * n))]] = True

        firsts: list[int] = []
        for i in range(n):
            if present[i]:
                joined = max(0, int(self.start - tenure[i]))
            else:
                joined = int(signup[i])
            u = _User(f"u{i + 1:06d}", joined, _interests(g[i]), round(float(spw[i]), 3),
                      round(float(completion[i]), 3), round(float(price_sens[i]), 3),
                      bool(referrers[i]), None)
            self.users.append(u)
            first = self._next_session(u, self.start) if present[i] else joined
            firsts.append(-1 if first is None else first)

        # churners: an exact share of the users, among those with room to drift and stop
        target = int(round(cfg.churn_fraction * n))
        eligible = [i for i in range(n) if 0 <= firsts[i] <= self.end - self.decay_lo - self.tail]
        order = nrng.permutation(len(eligible))
        for j in order[:target]:
            i = eligible[j]
            self._make_churner(self.users[i], firsts[i])
        if len(eligible) < target:
            log.info("only %d of %d users can churn within %.1f days", len(eligible), target, cfg.days)
        for i, u in enumerate(self.users):
            if firsts[i] >= 0 and firsts[i] < self.end:
                self._push(firsts[i], _SESSION, u)
        for c in self.courses:
            if c.published_at >= self.start:
                self._push(c.published_at, _PUBLISH, c)

    def _make_churner(self, u: _User, first: int) -> bool:
        rng = self.rng
        decay = int(rng.uniform(self.decay_lo, self.decay_hi))
        latest = self.end - self.tail - decay
        if latest < first:
            decay = int(self.end - self.tail - first)
            if decay < self.decay_lo:
                return False
            latest = first
        u.drift_start = int(rng.uniform(first, latest))
        u.stop_at = u.drift_start + decay
        return True

    # -- the heap --------------------------------------------------------------------------

    def _push(self, ts: int, code: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (ts, self.seq, code, payload))

    def _emit(self, ts: int, u: _User, cls: type, fields: dict[str, Any]) -> None:
        """Schedule a user event; it gets its event_id when it leaves the heap (in time order)."""
        self.seq += 1
        heapq.heappush(self.heap, (ts, self.seq, _EMIT, (cls, u, fields)))
        u.n_events += 1
        if u.last_ts is None or ts > u.last_ts:
            u.last_ts = ts

    def generate(self) -> Iterator[_Record]:
        sim = self.sim
        for c in self.courses:
            if c.published_at < self.start:
                self.counts["course"] += 1
                yield c.record
        heap = self.heap
        pop = heapq.heappop
        seed = self.seed
        counts = self.counts
        started = time.perf_counter()
        while heap:
            ts, _, code, payload = pop(heap)
            if code == _EMIT:
                cls, u, fields = payload
                self.n_events += 1
                counts[cls.kind] += 1
                yield cls(event_id=f"e{seed}-{self.n_events:09d}", user_id=u.user_id, ts=ts,
                          schema_version=1, **fields)
            elif code == _SESSION:
                u = payload
                last = self._session(u, ts)
                nxt = self._next_session(u, last)
                if nxt is not None:
                    self._push(nxt, _SESSION, u)
            elif code == _ARRIVE:
                self._arrive(ts, *payload)
            else:
                self.recent.append(payload)
                counts["course"] += 1
                yield payload.record
        self.exhausted = True
        elapsed = time.perf_counter() - started
        log.info("simulated %d users (%d invited), %s in %.2f s (seed %d)",
                 len(self.users), len(self.users) - self.cfg.users, counts, elapsed, sim.config.seed)

    # -- timing ----------------------------------------------------------------------------

    def _next_session(self, u: _User, after: int) -> int | None:
        """Next session start after ``after``: a thinned Poisson process (rhythm, weeks, drift).

        Candidates come at the user's rate times this week's factor times the peak of the weekly
        rhythm; each is kept with probability rhythm(hour of week) / peak, times the decline of a
        drifting user. A candidate past the end of the week restarts at the week boundary
        (memoryless), where the next week's factor is drawn.
        """
        rng = self.rng
        rand = rng.random
        log_ = math.log
        t0 = max(after, u.break_until)
        if self.cfg.burst_p and rng.random() < self.cfg.burst_p:  # the next session of a burst
            t = t0 + int(rng.uniform(2, 45) * MINUTE_MS)
            if t < self.end and (u.stop_at is None or t < u.stop_at):
                return t
        t = t0
        end, start = self.end, self.start
        stop, drift = u.stop_at, u.drift_start
        for _ in range(1_000_000):
            week = (t - start) // WEEK_MS
            if week != u.week:
                u.week = week
                u.week_factor = min(_WEEK_FACTOR_CAP, rng.gammavariate(3.0, 1 / 3))
            lam = u.rate * u.week_factor * _RHYTHM_PEAK
            boundary = start + (week + 1) * WEEK_MS
            t += int(-log_(1.0 - rand()) / lam) + 1
            jumped = t >= boundary
            if jumped:
                t = boundary
            if drift is not None and not u.drift_forced and t >= drift:
                u.drift_forced = True  # the decline starts with a session
                t = max(drift, t0 + 1)
                return t if t < end and (stop is None or t < stop) else None
            if t >= end or (stop is not None and t >= stop):
                return None
            if jumped:
                continue
            accept = _RHYTHM[((t + _LOCAL_OFFSET_MS) // HOUR_MS) % 168]
            if drift is not None and t >= drift and stop is not None:
                accept *= ((stop - t) / (stop - drift)) ** 1.5
            if rand() < accept:
                return t
        return None  # pragma: no cover - only for absurdly low acceptance

    # -- behaviour -------------------------------------------------------------------------

    def _pick_new(self, u: _User, t: int) -> _Course | None:
        rng = self.rng
        enrolled = u.enrolments
        if self._capped(u):
            return None
        iw = self.cfg.interest_weight
        follow = iw >= 1.0 or rng.random() < iw  # else the discovery follows global popularity
        if self.recent and follow and rng.random() < _RECENT_COURSE_P:
            fresh = [c for c in self.recent[-20:] if c.published_at >= t - 21 * DAY_MS
                     and u.interests.get(c.cat, 0.0) >= 0.15 and c.course_id not in enrolled]
            if fresh:
                return rng.choice(fresh)
        for attempt in range(8):
            cat = rng.choices(u.cats, cum_weights=u.cum)[0] if attempt < 5 and follow else None
            members, cum = self.pools[cat]
            if not members:
                continue
            c = rng.choices(members, cum_weights=cum)[0]
            if c.published_at <= t and c.course_id not in enrolled:
                return c
        return None

    def _capped(self, u: _User) -> bool:
        """The user enrolled in as many courses as the platform lets one user take."""
        cap = self.cfg.max_courses_per_user
        return bool(cap) and len(u.enrolments) >= cap

    def _pick_course(self, u: _User, t: int) -> tuple[_Course | None, bool]:
        """The course of this session, and whether it is newly discovered."""
        rng = self.rng
        if u.active and rng.random() < _CONTINUE_P:
            if len(u.active) == 1 or rng.random() < 0.6:
                cid = u.active[-1]
            else:
                cid = rng.choice(u.active)
                u.active.remove(cid)
                u.active.append(cid)
            return self.by_id[cid], False
        c = self._pick_new(u, t)
        if c is None and u.active:
            return self.by_id[u.active[-1]], False
        return c, c is not None

    def _enrol(self, u: _User, c: _Course) -> _Enrolment:
        e = _Enrolment()
        u.enrolments[c.course_id] = e
        u.active.append(c.course_id)
        if len(u.active) > _MAX_ACTIVE:
            u.active.pop(0)
        return e

    def _amount(self, price: float) -> float:
        if self.rng.random() < 0.25:
            return round(price * self.rng.choice(_DISCOUNTS), 2)
        return float(price)

    def _purchase(self, ts: int, u: _User, *, course: _Course | None = None, plan: str | None = None,
                  amount: float | None = None, share_id: str | None = None) -> None:
        self.n_orders += 1
        if plan is not None:
            price = PLAN_PRICES[plan]
            u.plan = plan
            u.plan_until = max(u.plan_until, ts) + _PLAN_DAYS[plan] * DAY_MS
        else:
            assert course is not None
            price = course.price
        self._emit(ts, u, Purchase, {
            "amount": float(price) if amount is None else amount,
            "currency": self.currency,
            "order_id": f"o{self.seed}-{self.n_orders:08d}",
            "course_id": None if course is None else course.course_id,
            "plan": plan,
            "share_id": share_id,
        })

    def _maybe_share(self, u: _User, c: _Course, ts: int, p: float) -> int:
        """Share ``c`` with probability ``p`` (higher for natural referrers); returns the new time."""
        rng = self.rng
        if u.is_referrer:
            p = min(0.9, p * 6.0)
        if rng.random() >= p:
            return ts
        ts += (5_000 + int(rng.random() * (60_000 - 5_000)))
        if ts >= self.end:
            return ts
        self.n_shares += 1
        share_id = f"s{self.seed}-{self.n_shares:07d}"
        channel = rng.choices(_CH_NAMES, cum_weights=_CH_CUM)[0]
        _, most, conv = _CHANNELS[channel]
        self._emit(ts, u, Share, {"course_id": c.course_id, "channel": channel, "share_id": share_id})
        p_join = 0.2 if u.is_referrer else 0.08
        for _ in range(most):
            if rng.random() < p_join:
                if rng.random() < 0.7:
                    delay = int(rng.expovariate(1 / (6 * HOUR_MS)))
                else:
                    delay = int(rng.uniform(0.5 * DAY_MS, 5 * DAY_MS))
                arrive = ts + MINUTE_MS + min(delay, 5 * DAY_MS - MINUTE_MS)
                if arrive < self.end:
                    self._push(arrive, _ARRIVE, (share_id, c, u.is_referrer, conv))
        return ts

    def _arrive(self, ts: int, share_id: str, c: _Course, from_referrer: bool, conv: float) -> None:
        """An invitee signs up from a share, looks at the shared course, and may buy it."""
        rng = self.rng
        cfg = self.cfg
        weights = [rng.gammavariate(0.05, 1.0) for _ in _CAT_NAMES]
        weights[_CAT_NAMES.index(c.cat)] += rng.gammavariate(4.0, 1.0)
        other = rng.randrange(len(_CAT_NAMES))
        weights[other] += rng.gammavariate(1.0, 1.0) * (rng.random() < 0.5)
        total = sum(weights)
        u = _User(f"u{len(self.users) + 1:06d}", ts, _interests(w / total for w in weights),
                  round(min(25.0, max(0.15, rng.lognormvariate(math.log(1.8), 0.75))), 3),
                  round(rng.betavariate(2.0, 2.5), 3), round(rng.betavariate(2.0, 2.0), 3),
                  rng.random() < cfg.referrer_fraction, share_id)
        self.users.append(u)
        if rng.random() < cfg.churn_fraction:
            self._make_churner(u, ts)
        e = self._enrol(u, c)
        cur = ts + (10_000 + int(rng.random() * (120_000 - 10_000)))
        p = (_REFERRER_CONVERSION if from_referrer else _OTHER_CONVERSION) * conv
        if c.price > 0 and rng.random() < p:
            amount = round(c.price * 0.9, 2) if rng.random() < 0.5 else float(c.price)  # referral discount
            if cur < self.end:
                self._purchase(cur, u, course=c, amount=amount, share_id=share_id)
                e.owned = True
        last = self._session(u, cur, forced=(c, e))
        nxt = self._next_session(u, last)
        if nxt is not None:
            self._push(nxt, _SESSION, u)

    def _session(self, u: _User, t: int, forced: tuple[_Course, _Enrolment] | None = None) -> int:
        """Generate one session's events from ``t``; returns when the session ended."""
        rng = self.rng
        rand = rng.random
        end = self.end
        cur = t
        if u.plan is not None and u.plan_until <= t:
            if u.plan == "monthly" and rand() < 0.6:
                self._purchase(t, u, plan="monthly")
                cur += (5_000 + int(rng.random() * (30_000 - 5_000)))
            else:
                u.plan = None
        cfg = self.cfg
        courses_viewed = 0
        for _attempt in range(max(3, cfg.courses_per_session)):
            if forced is not None:
                c, e = forced
                new = False
                forced = None
            else:
                c, new = self._pick_course(u, cur)
                if c is None:
                    break
                e = self._enrol(u, c) if new else u.enrolments[c.course_id]
            cur += (2_000 + int(rng.random() * (30_000 - 2_000)))
            subscribed = u.plan is not None and u.plan_until > cur
            if new and c.price > 0 and not subscribed and rand() < 0.12 * (1.0 - u.price_sens):
                if cur < end:
                    self._purchase(cur, u, course=c, amount=self._amount(c.price))
                    e.owned = True
                    cur = self._maybe_share(u, c, cur, 0.03)
            viewed = 0
            n_views = 1
            while rand() < cfg.views_continue_p and n_views < cfg.max_views:
                n_views += 1
            lessons = c.lessons
            abandoned = False
            for _ in range(n_views):
                k = e.done
                if k >= lessons:
                    break
                if not e.owned and c.price > 0 and k >= c.free_lessons and not subscribed:
                    if self._paywall(u, c, e, cur):
                        cur += (20_000 + int(rng.random() * (120_000 - 20_000)))
                        subscribed = u.plan is not None and u.plan_until > cur
                        cur = self._maybe_share(u, c, cur, 0.04)
                    else:
                        abandoned = True
                        break
                length = c.lesson_secs[k]
                if rand() < 0.75:
                    frac = 1.0
                    watched = length * rng.uniform(0.9, 1.08)
                else:
                    frac = rng.uniform(0.05, 0.9)
                    watched = length * frac
                watched = round(min(watched, 7200.0), 1)
                cur += int(watched * 1000)
                if cur >= end:
                    return cur
                if frac == 1.0:
                    e.done = k + 1
                    progress = 1.0 if e.done >= lessons else min(0.9999, round(e.done / lessons, 4))
                else:
                    progress = min(0.9999, round((k + frac) / lessons, 4))
                if progress > e.progress:
                    e.progress = progress
                self._emit(cur, u, View, {"course_id": c.course_id, "lesson_id": c.lesson_ids[k],
                                          "watch_seconds": watched, "progress": e.progress})
                viewed += 1
                cur += (3_000 + int(rng.random() * (90_000 - 3_000)))
                if not e.shared_half and e.progress >= 0.5 and e.done < lessons:
                    e.shared_half = True
                    cur = self._maybe_share(u, c, cur, 0.03)
                if frac < 1.0 and rand() < 0.6:
                    break  # left mid-lesson
            if e.done >= lessons:
                if c.course_id in u.active:
                    u.active.remove(c.course_id)
                    cur = self._maybe_share(u, c, cur, 0.15)
            elif not self._capped(u) and (abandoned or rand() < (0.02 + 0.2 * (1.0 - u.completion) ** 2) * (0.5 if e.owned else 1.0)):
                if c.course_id in u.active:
                    u.active.remove(c.course_id)
            elif viewed:
                cur = self._maybe_share(u, c, cur, 0.005)  # liked a lesson enough to pass it on
            if viewed:
                courses_viewed += 1
                if cfg.courses_per_session <= courses_viewed or rand() >= 0.6:
                    break
        if u.drift_forced and u.drift_start is not None and (u.last_ts is None or u.last_ts < u.drift_start):
            cur = self._rewatch(u, cur)  # a drifting user's first session after the drift shows up
        if rand() < _BREAK_P and not u.drift_forced:
            u.break_until = cur + int(rng.uniform(2 * DAY_MS, 7 * DAY_MS))
            if u.drift_start is not None:  # a churner's decline is not postponed by a break
                u.break_until = min(u.break_until, u.drift_start)
        return cur

    def _rewatch(self, u: _User, ts: int) -> int:
        """Re-watch a little of an open lesson of the most recently enrolled course possible."""
        for cid in reversed(list(u.enrolments)):
            e = u.enrolments[cid]
            c = self.by_id[cid]
            is_open = e.owned or c.price == 0 or (u.plan is not None and u.plan_until > ts)
            k = min(e.done, c.lessons - 1) if is_open else min(e.done, c.free_lessons - 1)
            if k < 0:
                continue
            watched = round(min(c.lesson_secs[k], 30.0 + 240.0 * self.rng.random()), 1)
            ts += int(watched * 1000)
            if ts < self.end:
                self._emit(ts, u, View, {"course_id": cid, "lesson_id": c.lesson_ids[k],
                                         "watch_seconds": watched, "progress": e.progress})
            return ts
        return ts

    def _paywall(self, u: _User, c: _Course, e: _Enrolment, ts: int) -> bool:
        """The user reached a paid lesson: buy the course, subscribe, or give up."""
        rng = self.rng
        if ts >= self.end:
            return False
        if u.spw >= 3.0 and rng.random() < _PLAN_SHARE_P:
            self._purchase(ts, u, plan="annual" if rng.random() < 0.3 else "monthly")
            return True
        p = 0.55 * (1.0 - 0.7 * u.price_sens * min(1.0, c.price / 499.0)) * (0.6 + 0.8 * u.completion)
        p *= 0.7 + 0.6 * u.interests.get(c.cat, 0.0)
        if rng.random() < p:
            self._purchase(ts, u, course=c, amount=self._amount(c.price))
            e.owned = True
            return True
        return False

    # -- ground truth ----------------------------------------------------------------------

    def truth(self) -> SimTruth:
        users: dict[str, UserTruth] = {}
        for u in self.users:
            churned = u.last_ts if (u.drift_start is not None and u.last_ts is not None) else None
            drift = u.drift_start
            if churned is not None and drift is not None and churned < drift:
                drift = churned  # rare: went silent before the planned decline could show
            users[u.user_id] = UserTruth(
                user_id=u.user_id, joined_at=u.joined_at, interests=dict(u.interests),
                churned_at=churned, drift_start=drift, is_referrer=u.is_referrer,
                invited_by_share=u.invited_by, sessions_per_week=u.spw,
                completion_propensity=u.completion, price_sensitivity=u.price_sens, events=u.n_events,
            )
        courses = {c.course_id: CourseTruth(c.course_id, c.cat, round(c.popularity, 4), c.lessons,
                                            c.free_lessons, c.published_at) for c in self.courses}
        return SimTruth(users=users, courses=courses, start_ms=self.start, end_ms=self.end,
                        complete=self.exhausted)


# ---------------------------------------------------------------------------------------------
# the public simulator


class PlatformSimulator:
    """A course platform's event stream for a seed: same config, same events, same truth."""

    def __init__(self, config: SimConfig) -> None:
        if not isinstance(config, SimConfig):
            msg = f"config must be a SimConfig, got {type(config).__name__}"
            raise ValueError(msg)
        if config.start_ms is None:
            now = int(time.time() * 1000)
            start = (now - config.days_ms) // DAY_MS * DAY_MS
            config = replace(config, start_ms=max(0, start))
        assert config.start_ms is not None
        #: the configuration, with ``start_ms`` resolved (so it reproduces this run)
        self.config = config
        self.start_ms = config.start_ms
        self.end_ms = config.start_ms + config.days_ms
        self._courses = self._build_catalogue()
        #: every course, in id order (= publication order), incl. ones published during the period
        self.catalogue: list[Course] = [c.record for c in self._courses]
        self._run: _Run | None = None

    def _build_catalogue(self) -> list[_Course]:
        cfg = self.config
        rng = random.Random(f"coursepulse-sim:{cfg.seed}:catalogue")
        n = cfg.courses
        cats = list(_CAT_NAMES[: min(n, len(_CAT_NAMES))])  # every category present when possible
        cats += rng.choices(_CAT_NAMES, weights=_CAT_SHARE, k=n - len(cats))
        rng.shuffle(cats)
        n_new = int(round(0.1 * n))
        new_flags = [True] * n_new + [False] * (n - n_new)
        rng.shuffle(new_flags)
        titles: set[str] = set()
        drafts = []
        for cat, is_new in zip(cats, new_flags, strict=True):
            _, subjects, patterns = CATEGORIES[cat]
            for _ in range(20):
                subject, subject_tag = rng.choice(subjects)
                pattern, pattern_tags = rng.choice(patterns)
                title = pattern.format(s=subject)
                if title not in titles:
                    break
            else:
                base = title
                vol = 2
                while f"{base}, Vol. {vol}" in titles:
                    vol += 1
                title = f"{base}, Vol. {vol}"
            titles.add(title)
            tags = [cat, subject_tag, *pattern_tags]
            tags = list(dict.fromkeys(tags))
            price = float(rng.choices(_PRICE_POINTS, weights=_PRICE_WEIGHTS)[0])
            if cat in ("programming", "data-science") and price and rng.random() < 0.3:
                price = float(_PRICE_POINTS[min(len(_PRICE_POINTS) - 1, _PRICE_POINTS.index(int(price)) + 2)])
            if is_new:
                published = self.start_ms + int(rng.uniform(0.02, 0.85) * cfg.days_ms) // 1000 * 1000
            else:
                published = max(0, self.start_ms - int(rng.uniform(1, 730) * DAY_MS) // 1000 * 1000)
                published = min(published, max(0, self.start_ms - 1))
            if cfg.free_courses:
                price = 0.0
            popularity = rng.lognormvariate(0.0, cfg.popularity_sigma)
            lessons = int(rng.triangular(5, 31, 12))
            if cfg.max_lessons != 30:  # the same shape, stretched to the longest course
                lessons = int(lessons * cfg.max_lessons / 30)
            lesson_median = rng.lognormvariate(math.log(540), 0.35)  # ~9 minutes
            lesson_secs = [round(min(5400.0, max(90.0, lesson_median * rng.lognormvariate(0.0, 0.3))), 1)
                           for _ in range(min(cfg.max_lessons, lessons))]
            free = 0 if price == 0 else rng.choices((0, 1, 2, 3), weights=(1, 3, 4, 2))[0]
            drafts.append((published, cat, title, price, tags, popularity, lesson_secs, free, is_new))
        drafts.sort(key=lambda d: d[0])
        out = []
        for i, (published, cat, title, price, tags, popularity, lesson_secs, free, is_new) in enumerate(drafts):
            record = Course(
                course_id=f"c{i + 1:04d}", title=title, category=cat, price=price, published_at=published,
                tags=tags, schema_version=1, ts=published if is_new else self.start_ms,
            )
            out.append(_Course(record, popularity, lesson_secs, free))
        return out

    def events(self) -> Iterator[_Record]:
        """The event stream, generated lazily: catalogue first, then events in event-time order.

        Every call starts the simulation afresh and yields the identical sequence.
        """
        run = _Run(self)
        self._run = run
        return run.generate()

    def truth(self) -> SimTruth:
        """Ground truth of the latest ``events()`` run (a full run is done if none was started).

        Complete once ``events()`` has been exhausted; before that it is a snapshot (``complete``
        is False and ``churned_at`` may not yet be the churner's final event).
        """
        if self._run is None:
            for _ in self.events():
                pass
        assert self._run is not None
        if not self._run.exhausted:
            log.warning("truth() before events() was exhausted: returning an incomplete snapshot")
        return self._run.truth()


# ---------------------------------------------------------------------------------------------
# files


def write_jsonl(events: Iterable[_Record], path: Path | str) -> int:
    """Write records as JSON Lines (``{"type": kind, **fields}``, epoch-ms times); returns the count."""
    n = write_events(events, path)
    log.info("wrote %d records to %s", n, path)
    return n


#: read a JSON Lines event file back into validated records (see schemas.eventfile)
read_jsonl = read_events


def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_ts(ms)


def _ms(text: str | None) -> int | None:
    return None if text is None else parse_ts(text)


def write_truth(truth: SimTruth, out_dir: Path | str) -> None:
    """Write ``truth.json`` (everything, times as ISO-8601 UTC) and ``labels.csv`` (user_id,churned_at)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    users = {}
    for uid, t in truth.users.items():
        d = dict(t.__dict__)
        for name in ("joined_at", "churned_at", "drift_start"):
            d[name] = _iso(d[name])
        users[uid] = d
    courses = {}
    for cid, c in truth.courses.items():
        d = dict(c.__dict__)
        d["published_at"] = _iso(c.published_at)
        courses[cid] = d
    doc = {"start": _iso(truth.start_ms), "end": _iso(truth.end_ms), "complete": truth.complete,
           "users": users, "courses": courses}
    (out_dir / "truth.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    with (out_dir / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["user_id", "churned_at"])
        for uid in sorted(truth.users):
            writer.writerow([uid, _iso(truth.users[uid].churned_at) or ""])
    log.info("wrote ground truth for %d users to %s", len(truth.users), out_dir)


def read_truth(out_dir: Path | str) -> SimTruth:
    """Read ``truth.json`` written by :func:`write_truth` back into a :class:`SimTruth`."""
    doc = orjson.loads((Path(out_dir) / "truth.json").read_bytes())
    users = {}
    for uid, d in doc["users"].items():
        d = dict(d)
        for name in ("joined_at", "churned_at", "drift_start"):
            d[name] = _ms(d[name])
        users[uid] = UserTruth(**d)
    courses = {}
    for cid, d in doc.get("courses", {}).items():
        d = dict(d)
        d["published_at"] = _ms(d["published_at"])
        courses[cid] = CourseTruth(**d)
    return SimTruth(users=users, courses=courses, start_ms=_ms(doc["start"]) or 0,
                    end_ms=_ms(doc["end"]) or 0, complete=doc.get("complete", True))


# ---------------------------------------------------------------------------------------------
# profiles: platform shapes the models were not tuned on

#: name -> SimConfig fields of a platform shape (``users``, ``days``, ``seed``, ``start_ms`` are
#: the caller's). ``default`` is the paid-course platform the defaults describe.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    # a few dozen courses; most discoveries follow what everybody takes, not the user's interests
    "small-popular": {"courses": 30, "popularity_sigma": 2.0, "interest_weight": 0.25},
    # ~1,700 items; users come rarely but then binge: sessions in bursts, many lessons and
    # several courses per session
    "binge-large": {"courses": 1700, "spw_median": 0.7, "burst_p": 0.5, "views_continue_p": 0.8,
                    "max_views": 15, "courses_per_session": 2},
    # one free course per user, long courses followed daily, 80 % of users drop out
    "mooc": {"courses": 40, "churn_fraction": 0.8, "spw_median": 6.0, "max_courses_per_user": 1,
             "free_courses": True, "max_lessons": 60, "views_continue_p": 0.35, "max_views": 3},
}


def profile_config(name: str, **fields: Any) -> SimConfig:
    """The :class:`SimConfig` of profile ``name``; ``fields`` that are not None override it.

    >>> profile_config("small-popular", users=100).courses
    30
    >>> profile_config("mooc", courses=12).courses
    12
    """
    if name not in PROFILES:
        msg = f"profile must be one of {sorted(PROFILES)}, got {name!r}"
        raise ValueError(msg)
    merged = {**PROFILES[name], **{k: v for k, v in fields.items() if v is not None}}
    return SimConfig(**merged)
