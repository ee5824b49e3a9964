"""Accumulate co-occurrence rows where each course lives; publish their top-K neighbours.

``course-cooc`` is keyed by course, so one worker owns each course's row (table ``cooc``,
changelog-backed: it moves with the partition). Changed rows are turned into neighbour lists by
the Numba kernel on a timer and published, keyed by course, to the compacted
``course-neighbours`` topic that every worker reads (``agents/broadcast_neighbours.py``).
"""

from __future__ import annotations

import logging

import orjson

from models.profile import DAY_MS
from models.recommend import RowUpdate, apply_update, inflation, new_row, row_neighbours
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.runtime import dirty_rows, index

__all__ = ["accumulate_similarity", "publish_neighbours"]

log = logging.getLogger(__name__)
_HL_MS = settings.half_life_days * DAY_MS
_latest_ts: dict[str, int] = {"ts": 0}


@app.agent(topics.course_cooc)
async def accumulate_similarity(stream):  # noqa: ANN001 - faust stream
    """Add each row update to its course's stored row and mark the row changed."""
    async for event in stream.events():
        try:
            update = RowUpdate.from_dict(orjson.loads(event.message.value))
        except (ValueError, KeyError, TypeError) as exc:  # our own topic: a bug, not user input
            log.error("dropping malformed co-occurrence update at offset %d: %s", event.message.offset, exc)
            metrics.inc("cooc_malformed")
            continue
        entry = tables.cooc.get(update.course_id) or new_row()
        tables.cooc[update.course_id] = apply_update(entry, update, _HL_MS)
        dirty_rows[update.course_id] = event.message.partition
        _latest_ts["ts"] = max(_latest_ts["ts"], update.ts)
        metrics.inc("cooc_updates_applied")


@app.timer(settings.neighbours_refresh_s)
async def publish_neighbours() -> None:
    """Recompute and publish the neighbours of every changed row (popularity from the index)."""
    if not dirty_rows:
        return
    batch = list(dirty_rows.items())
    dirty_rows.clear()
    now = _latest_ts["ts"]
    total = float(index.popularity(now).sum()) or 1.0
    for course_id, partition in batch:
        entry = tables.cooc.get(course_id)
        if entry is None:
            continue
        neighbours = row_neighbours(entry, lambda c: index.popularity_of(c, now), now, _HL_MS,
                                    k=settings.neighbours_k, measure=settings.similarity, total=total)
        value = {"course_id": course_id, "pop": entry["pop"] / inflation(now, _HL_MS), "ts": now,
                 "neighbours": neighbours}
        await topics.course_neighbours.send(key=course_id.encode(), value=orjson.dumps(value), partition=partition)
        metrics.inc("neighbour_lists_published")
