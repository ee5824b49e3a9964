"""Worker-scoped objects shared by the agents: profile rules, the Redis serving copy, dirty sets."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from faust import streams as _faust_streams

from models.profile import SegmentRules
from models.recommend import NeighbourIndex, Ranker
from models.retention import RetentionModels
from streams.app import settings
from streams.serving import RedisServing

__all__ = [
    "YIELD_EVERY", "EveryN", "RecTrigger", "as_current_event", "dirty_profiles", "dirty_recs", "dirty_rows", "index", "new_retention", "ranker", "retention",
    "rules", "serving",
]

#: timers that publish many users give the event loop back after this many (a flush of hundreds
#: of profiles would otherwise hold every waiting event for its whole length)
YIELD_EVERY = 32
rules = SegmentRules()
serving = RedisServing.from_settings(settings)
#: user_id -> partition, for users whose profile changed since the last flush
dirty_profiles: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class RecTrigger:
    """The latest event of a user since their recommendations were last published."""

    partition: int
    event_id: str
    ts: int


#: user_id -> what triggered a fresh recommendation list
dirty_recs: dict[str, RecTrigger] = {}
#: course_id -> partition, for co-occurrence rows changed since their neighbours were published
dirty_rows: dict[str, int] = {}
#: the broadcast copy of every course's neighbours, popularity and catalogue entry
index = NeighbourIndex(settings.neighbours_k, settings.half_life_days)
ranker = Ranker(n=settings.rec_n, completion=rules.completion)

#: partition -> its retention models (loaded from the ``retention`` table on first use)
retention: dict[int, RetentionModels] = {}


def new_retention() -> RetentionModels:
    """Fresh retention models configured from the settings."""
    return RetentionModels(horizon_days=settings.churn_horizon_days, threshold=settings.churn_threshold,
                           release=settings.churn_release, cooldown_days=settings.alert_cooldown_days,
                           first_check_days=settings.first_check_days, rules=rules)


def as_current_event(event: Any) -> None:
    """Make ``event`` the stream's current event, so a table write goes to its partition.

    Faust routes a table write's changelog record to the partition of the current event. Agents
    that take events in batches (``take_events``) write once per key after folding several
    events, so they point it at an event of the right partition first.
    """
    _faust_streams._current_event.set(weakref.ref(event))  # noqa: SLF001 - see the docstring


class EveryN:
    """Counts events per partition and says when a partition reached ``every`` since the last time
    (model checkpoints are written to their table that often)."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def due(self, partition: int, every: int, events: int = 1) -> bool:
        n = self._counts.get(partition, 0) + events
        if n < every:
            self._counts[partition] = n
            return False
        self._counts[partition] = 0
        return True

    def forget(self, partition: int) -> None:
        self._counts.pop(partition, None)
