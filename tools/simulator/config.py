"""What to simulate (:class:`SimConfig`), checked when it is made."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tools.simulator.vocabulary import _MAX_TS, DAY_MS

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
