"""Worker-scoped objects shared by the agents: profile rules, the Redis serving copy, the
neighbour index, the hand-over between steps (:class:`Handover`), and the one way agents reach a
partition's tables (:class:`PartitionScope`)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from faust import streams as _faust_streams

from models.profile import SegmentRules
from models.recommend import NeighbourIndex, Ranker
from models.step import RecTrigger
from streams.app import settings
from streams.partition_models import new_shared_model
from streams.serving import RedisServing

__all__ = [
    "YIELD_EVERY", "Handover", "PartitionScope", "RecTrigger", "as_current_event", "churn_share", "handover", "index",
    "publish_lock", "ranker", "rules", "serving",
]

#: timers that publish many users give the event loop back after this many (a flush of hundreds
#: of profiles would otherwise hold every waiting event for its whole length)
YIELD_EVERY = 32
rules = SegmentRules()
serving = RedisServing.from_settings(settings)
#: held while a step sends a user's outputs to Kafka and then to Redis, so two steps publishing
#: the same user (an ingest batch and a referral credit) write Redis in the order of Kafka
publish_lock = asyncio.Lock()


class Handover:
    """What one step leaves for another on this worker: the one object agents hand work over
    through (no module dicts).

    - ``pending_lists``: user_id -> the trigger of a list the ingest step could not rank (the
      worker has no neighbour index in its first seconds); ``agents.publish_recommendations``
      ranks them once the index arrives.
    - ``dirty_rows``: course_id -> partition of the co-occurrence rows changed since their
      neighbours were published (``agents.accumulate_similarity``: its agent marks, its timer
      publishes).
    - ``rescan_partitions``: ``course-cooc`` partitions assigned to this worker whose every row's
      neighbours are to be published again once their table is recovered (the changed rows of
      their previous owner were in its memory only).
    """

    def __init__(self) -> None:
        self.pending_lists: dict[str, RecTrigger] = {}
        self.dirty_rows: dict[str, int] = {}
        self.rescan_partitions: set[int] = set()

    def owe_list(self, user_id: str, trigger: RecTrigger) -> None:
        """A list that could not be ranked yet: rank it later, for this trigger."""
        self.pending_lists[user_id] = trigger

    def listed(self, user_id: str) -> None:
        """The user's list was published: nothing pending for them."""
        self.pending_lists.pop(user_id, None)

    def take_pending_lists(self) -> list[tuple[str, RecTrigger]]:
        """Every pending list, removed from the hand-over."""
        out = list(self.pending_lists.items())
        self.pending_lists.clear()
        return out

    def mark_row(self, course_id: str, partition: int) -> None:
        """A co-occurrence row changed: publish its neighbours at the next tick."""
        self.dirty_rows[course_id] = partition

    def take_rows(self) -> list[tuple[str, int]]:
        """Every changed row, removed from the hand-over."""
        out = list(self.dirty_rows.items())
        self.dirty_rows.clear()
        return out


handover = Handover()
#: the broadcast copy of every course's neighbours, popularity and catalogue entry
index = NeighbourIndex(settings.neighbours_k, settings.half_life_days)
ranker = Ranker(n=settings.rec_n, completion=rules.completion)
#: every partition's churn classifier, merged: what this worker's partitions score churn with
churn_share = new_shared_model(settings)


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
