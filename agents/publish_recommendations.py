"""Top-N recommendations, ranked by the step that changed the user: in the ingest batch that
folded their events, before that batch's offsets are committed.

The ranker scores candidates from the worker's neighbour index (Numba kernel) and gives a reason
per item; the list goes to ``recommendations`` (the user's partition) and to Redis for
low-latency reads (``GET /recommendations/{user_id}`` on any worker). Its ``rec_id`` is derived
from the triggering event, so a redelivered trigger makes the same list id. Only while the
worker has no neighbour index at all (its first seconds) is a list not rankable; such users wait
in the worker's :data:`streams.runtime.handover` and the timer here ranks them once the index arrives.
The records themselves are built in :mod:`streams.publish`.
"""

from __future__ import annotations

import asyncio
import logging

from models.profile import UserState
from streams import tables
from streams.app import app, settings
from streams.publish import (
    MODEL_VERSIONS,
    attribution_gauges,
    outbox,
    rec_id_for,
    rec_value,
    send_recommendations,
)
from streams.runtime import YIELD_EVERY, handover, index, publish_lock, serving

__all__ = ["MODEL_VERSIONS", "flush_pending", "rec_id_for", "rec_value"]

log = logging.getLogger(__name__)


@app.timer(settings.rec_flush_s)
async def flush_pending() -> None:
    """Rank the users whose list could not be ranked when their events came (no index yet)."""
    if not handover.pending_lists or index.size == 0:
        return
    async with publish_lock:  # Redis in the order of Kafka
        await _flush_pending_locked()


async def _flush_pending_locked() -> None:
    served: list[tuple[str, bytes]] = []
    for n, (user_id, trigger) in enumerate(handover.take_pending_lists(), 1):
        raw = tables.users.get(user_id)  # no current event: the store looks in every partition
        if raw is None:  # the partition moved to another worker, which owes the list now
            continue
        value = rec_value(UserState.from_bytes(raw), trigger)
        if value is None:
            continue
        send_recommendations(user_id, value, trigger.partition)
        served.append((user_id, value))
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let waiting events in: a long flush must not hold the loop
    await outbox.send()  # Kafka before Redis
    await serving.put_many("rec", served)
    attribution_gauges()
