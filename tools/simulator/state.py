"""The simulation's internal state: courses, enrolments and users as the run sees them."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate

from schemas.events import Course
from tools.simulator.vocabulary import _CAT_NAMES, WEEK_MS

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
