"""Accumulate co-occurrence rows where each course lives; publish their top-K neighbours.

``course-cooc`` is partitioned by course (the ingest agent sends one bundle per partition and
batch, holding the rows that partition owns), so one worker owns each course's row (table ``cooc``,
changelog-backed: it moves with the partition). Changed rows are turned into neighbour lists by
the Numba kernel on a timer and published, keyed by course, to the compacted
``course-neighbours`` topic that every worker reads (``agents/broadcast_neighbours.py``).

The set of changed rows lives in memory: when a ``course-cooc`` partition is assigned (a start,
a restart after a crash, a rebalance), every row of it is published again once its table is
recovered, so rows changed since their previous owner's last tick are not left unpublished, and
every list is recomputed from the popularity of its courses at that time.
"""

from __future__ import annotations

import logging

import orjson

from models.profile import DAY_MS
from models.recommend import RowUpdate, apply_update, inflation, new_row, rows_neighbours
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.partitioning import partition_for
from streams.publish import outbox
from streams.runtime import PartitionScope, handover, index

__all__ = ["accumulate_similarity", "parse_updates", "publish_neighbours"]

log = logging.getLogger(__name__)
_HL_MS = settings.half_life_days * DAY_MS
_latest_ts: dict[str, int] = {"ts": 0}


def _mark_rescanned() -> None:
    """Once the tables are recovered: mark every row of the partitions to rescan as changed
    (``course-cooc`` partitions assigned to this worker: ``streams.partitions``)."""
    if not handover.rescan_partitions or not app.tables.recovery.completed.is_set():
        return
    parts, n = handover.rescan_partitions, topics.course_cooc.partitions or settings.partitions
    handover.rescan_partitions = set()
    for course_id, entry in list(tables.cooc.items()):
        partition = partition_for(course_id.encode(), n)
        if partition in parts and entry:
            handover.dirty_rows.setdefault(course_id, partition)
            _latest_ts["ts"] = max(_latest_ts["ts"], int(entry["ts"]))


@app.agent(topics.course_cooc)
async def accumulate_similarity(stream):  # noqa: ANN001 - faust stream
    """Add row updates to their course's stored row (one table write per course and batch)."""
    async for batch in stream.take_events(settings.ingest_batch, settings.ingest_batch_within_s):
        rows: dict[str, tuple[dict, PartitionScope]] = {}
        applied = 0
        for event in batch:
            scope = PartitionScope(event)  # a bundle holds only rows its partition owns
            try:
                updates = parse_updates(orjson.loads(event.message.value))
            except (ValueError, KeyError, TypeError) as exc:  # our own topic: a bug, not user input
                log.error("dropping malformed co-occurrence update at offset %d: %s", event.message.offset, exc)
                metrics.inc("cooc_malformed")
                continue
            for update in updates:
                entry = rows.get(update.course_id, (None,))[0]
                if entry is None:
                    entry = scope.get(tables.cooc, update.course_id) or new_row()
                rows[update.course_id] = (apply_update(entry, update, _HL_MS), scope)
                _latest_ts["ts"] = max(_latest_ts["ts"], update.ts)
            applied += len(updates)
        for course_id, (entry, scope) in rows.items():
            scope.put(tables.cooc, course_id, entry)  # the partition its bundle came in on
            handover.mark_row(course_id, scope.partition)
        metrics.inc("cooc_updates_applied", by=applied)


def parse_updates(data: dict) -> list[RowUpdate]:
    """A ``course-cooc`` message: a bundle ``{"updates": [...]}`` of the courses one partition
    owns, or (as sent before bundling) a single update."""
    if "updates" in data:
        return [RowUpdate.from_dict(u) for u in data["updates"]]
    return [RowUpdate.from_dict(data)]


@app.timer(settings.neighbours_refresh_s)
async def publish_neighbours() -> None:
    """Recompute and publish the neighbours of every changed row (one kernel call per tick).

    Other courses' popularity comes from this worker's own rows when it owns them, else from the
    broadcast index. A row that met a course whose popularity is not known yet (its owner has
    not published it) stays marked and is computed again on the next tick.
    """
    _mark_rescanned()
    if not handover.dirty_rows:
        return
    batch = handover.take_rows()
    now = _latest_ts["ts"]
    scale = inflation(now, _HL_MS)
    total = float(index.popularity(now).sum()) or 1.0

    def pop_of(course_id: str) -> float:
        own = tables.cooc.get(course_id)
        return own["pop"] / scale if own is not None else index.popularity_of(course_id, now)

    owned = []  # (course_id, partition, entry) of the rows still here (a partition may have moved)
    for course_id, partition in batch:
        entry = tables.cooc.get(course_id)
        if entry is not None:
            owned.append((course_id, partition, entry))
    if not owned:
        return
    # every changed row in one kernel call (CSR over the rows; each other course's popularity once)
    lists, unknown = rows_neighbours([entry for _, _, entry in owned], pop_of, now, _HL_MS,
                                     k=settings.neighbours_k, measure=settings.similarity, total=total)
    pops = [entry["pop"] / scale for _, _, entry in owned]
    for (course_id, partition, _), neighbours, missing, pop in zip(owned, lists, unknown.tolist(), pops, strict=True):
        if missing:
            handover.dirty_rows.setdefault(course_id, partition)
        value = {"course_id": course_id, "pop": pop, "ts": now, "neighbours": neighbours}
        outbox.add(topics.course_neighbours, course_id.encode(), orjson.dumps(value), partition)
        metrics.inc("neighbour_lists_published")
    await outbox.send()
