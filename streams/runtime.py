"""Worker-scoped objects shared by the agents: profile rules, the Redis serving copy, the
neighbour index, and the one way agents reach a partition's tables (:class:`PartitionScope`)."""

from __future__ import annotations

import asyncio
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
    "YIELD_EVERY", "EveryN", "PartitionScope", "RecTrigger", "as_current_event", "dirty_rows", "index", "new_retention",
    "pending_recs", "publish_lock", "ranker", "retention", "rules", "serving",
]

#: timers that publish many users give the event loop back after this many (a flush of hundreds
#: of profiles would otherwise hold every waiting event for its whole length)
YIELD_EVERY = 32
rules = SegmentRules()
serving = RedisServing.from_settings(settings)
#: held while a step sends a user's outputs to Kafka and then to Redis, so two steps publishing
#: the same user (an ingest batch and a referral credit) write Redis in the order of Kafka
publish_lock = asyncio.Lock()


@dataclass(frozen=True, slots=True)
class RecTrigger:
    """The latest event of a user since their recommendations were last published."""

    partition: int
    event_id: str
    ts: int


#: user_id -> the trigger of a list that could not be ranked yet (the worker has no neighbour
#: index in its first seconds); ``agents.publish_recommendations.flush_pending`` ranks them
pending_recs: dict[str, RecTrigger] = {}
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


class PartitionScope:
    """Table access pinned to one partition: every read and every write of a batch's partition
    goes through one of these, which makes an event of that partition current first.

    Faust's RocksDB store keeps one database per partition and, when an event is current, reads
    only the current event's partition: a read made under another partition's event returns
    nothing (the memory store ignores partitions, so such a bug passes every memory test). A
    write's changelog record goes to the current event's partition too. Reading and writing only
    through the scope of the partition the key lives in makes both right by construction.
    """

    __slots__ = ("event", "partition")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.partition: int = event.message.partition

    def enter(self) -> None:
        """Make this partition's event current (for model loads and checkpoints that use tables)."""
        as_current_event(self.event)

    def get(self, table: Any, key: str) -> Any:
        """``table[key]`` as stored in this partition, or None."""
        as_current_event(self.event)
        return table.get(key)

    def put(self, table: Any, key: str, value: Any) -> None:
        """Write ``table[key]`` in this partition (store and changelog)."""
        as_current_event(self.event)
        table[key] = value


class EveryN:
    """Counts events per partition and says when a partition reached ``every`` since the last time
    (model checkpoints are written to their table that often)."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def due(self, partition: int, every: int, events: int = 1) -> bool:
        """Count ``events`` for the partition; True (and restart the count) once ``every`` is reached."""
        n = self._counts.get(partition, 0) + events
        if n < every:
            self._counts[partition] = n
            return False
        self._counts[partition] = 0
        return True

    def forget(self, partition: int) -> None:
        """Drop the partition's count (it moved away)."""
        self._counts.pop(partition, None)
