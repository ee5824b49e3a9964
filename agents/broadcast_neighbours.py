"""Keep this worker's copy of every course's neighbours and catalogue entry, and of every
partition's churn classifier parameters, up to date.

Every worker reads all partitions of ``course-neighbours``, ``courses`` and ``churn-model``
(into the merge its partitions score churn with, :class:`models.pooling.SharedModel`) from the beginning
with a plain consumer (no group), into the dense :class:`models.recommend.NeighbourIndex` the
ranker's kernel scores from. A Faust GlobalTable would do the same job, but its recovery trusts
the broker's end offsets (wrong on Tansu) and gives no hook to keep dense arrays in step.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiokafka import AIOKafkaConsumer

from schemas.base import parse
from schemas.events import Course
from schemas.exceptions import ValidationError
from streams.app import app, settings
from streams.metrics import metrics
from streams.runtime import churn_share, index

__all__ = ["broadcast_neighbours"]

log = logging.getLogger(__name__)


def apply_record(topic: str, value: bytes) -> None:
    """Fold one ``course-neighbours``, ``courses`` or ``churn-model`` record into the index or the merge."""
    data = orjson.loads(value)
    if topic == "churn-model":
        churn_share.offer(int(data["partition"]), data["params"])  # kept unless it holds more labels
        metrics.inc("churn_params_received")
    elif topic == "courses":
        course = parse(Course, data)
        index.set_course(course.course_id, course.title, course.category, course.tags, course.published_at)
        metrics.inc("catalogue_updates")
    else:
        index.update(data["course_id"], float(data["pop"]), int(data["ts"]),
                     [(str(c), float(s)) for c, s in data["neighbours"]])
        metrics.inc("neighbour_lists_received")


@app.task
async def broadcast_neighbours() -> None:
    """Tail ``course-neighbours``, ``courses`` and ``churn-model`` for the life of the worker."""
    names = {settings.topic(n): n for n in ("course-neighbours", "courses", "churn-model")}
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=settings.fetch_max_wait_ms)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batch.items():
                for rec in records:
                    try:
                        apply_record(names[tp.topic], rec.value)
                    except (ValueError, KeyError, TypeError, ValidationError) as exc:
                        metrics.inc("broadcast_rejected", names[tp.topic])
                        log.warning("ignoring bad %s record at %d:%d: %s", tp.topic, tp.partition, rec.offset, exc)
            metrics.set("catalogue_size", index.size)
    except asyncio.CancelledError:
        raise
    finally:
        await consumer.stop()
