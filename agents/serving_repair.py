"""Catch the Redis serving copy up after an outage: retry owed writes, re-sync when needed.

Every ``REPAIR_EVERY_S`` this timer checks that Redis still holds this worker's marker key (gone:
Redis restarted empty or was flushed), writes the values owed since Redis went away (the serving
copy pauses, with exponential backoff, between attempts) and, when the owed map was not enough,
starts a re-sync of this worker's partitions from the output topics in the background, so owed
writes keep being retried while it reads.
"""

from __future__ import annotations

import asyncio
import logging

from streams import topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.runtime import serving
from streams.serving_resync import resync

__all__ = ["REPAIR_EVERY_S", "owned_partitions", "repair_serving"]

log = logging.getLogger(__name__)
#: how often Redis is checked and owed writes retried (when its pause allows)
REPAIR_EVERY_S = 0.5
_running: list[asyncio.Future] = []


def owned_partitions() -> set[int]:
    """The input partitions assigned to this worker (output records go to the same partition)."""
    inputs = {settings.topic(name) for name in topics.INPUT_TOPICS}
    return {tp.partition for tp in app.consumer.assignment() if tp.topic in inputs}


async def _resync(partitions: set[int]) -> None:
    try:
        written = await resync(serving, settings, partitions)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - retried on a later tick
        metrics.inc("redis_resync_failed")
        log.warning("Redis re-sync of partitions %s failed (%s); retrying later", sorted(partitions), exc)
        return
    metrics.inc("redis_resyncs")
    metrics.inc("redis_resync_keys", by=sum(written.values()))
    log.info("Redis re-synced for partitions %s: %s", sorted(partitions), written)


@app.timer(REPAIR_EVERY_S)
async def repair_serving() -> None:
    """Check Redis, retry owed writes, start a re-sync when one is needed and none runs."""
    await serving.check()
    await serving.retry_owed()
    _running[:] = [f for f in _running if not f.done()]
    if serving.resync_needed and not _running and serving.available():
        partitions = owned_partitions()
        if partitions:  # none during a rebalance: next tick
            _running.append(app.add_future(_resync(partitions)))
