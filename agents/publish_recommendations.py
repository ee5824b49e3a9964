"""Top-N recommendations, ranked by the step that changed the user: in the ingest batch that
folded their events, before that batch's offsets are committed.

The ranker scores candidates from the worker's neighbour index (Numba kernel) and gives a reason
per item; the list goes to ``recommendations`` (the user's partition) and to Redis for
low-latency reads (``GET /recommendations/{user_id}`` on any worker). Its ``rec_id`` is derived
from the triggering event, so a redelivered trigger makes the same list id. Only while the
worker has no neighbour index at all (its first seconds) is a list not rankable; such users wait
in :data:`streams.runtime.pending_recs` and the timer here ranks them once the index arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from agents.score_churn import models_for
from models.churn import churn_features
from models.profile import UserState
from schemas.codec import encode
from schemas.outputs import RecItem, Recommendations
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.runtime import (
    YIELD_EVERY,
    RecTrigger,
    index,
    pending_recs,
    publish_lock,
    ranker,
    serving,
)

__all__ = ["MODEL_VERSIONS", "flush_pending", "rec_value", "send_recommendations", "with_repurchase_reason"]
#: repurchase propensity from which a bought course's follow-up is worded "continue with …"
REPURCHASE_REASON_AT = 0.5

log = logging.getLogger(__name__)
MODEL_VERSIONS = {"itemknn": f"{settings.similarity}-k{settings.neighbours_k}", "ranker": "hybrid-1"}
_NS = uuid.UUID("6f1c1f64-5d0e-4b8e-9d4b-0c7e1f1f4a10")


def rec_id_for(user_id: str, event_id: str) -> str:
    """Deterministic: a redelivered trigger makes the same id, so consumers can de-duplicate."""
    return str(uuid.uuid5(_NS, f"{user_id}/{event_id}"))


def rec_value(state: UserState, trigger: RecTrigger) -> bytes | None:
    """The ``recommendations`` record for ``state`` after ``trigger`` (JSON bytes), or None when
    nothing can be ranked (no neighbour index yet, or no candidate)."""
    if index.size == 0:
        return None
    items = ranker.recommend(state, index, trigger.ts)
    if not items:
        return None
    items = with_repurchase_reason(items, state, trigger.partition, trigger.ts)
    record = Recommendations(
        rec_id=rec_id_for(state.user_id, trigger.event_id),
        user_id=state.user_id,
        items=[RecItem(course_id=c, score=s, reason=r) for c, s, r in items],
        model_versions=MODEL_VERSIONS,
        generated_at=trigger.ts,
        event_id=trigger.event_id,
    )
    metrics.inc("recommendations_published")
    return encode(record)


async def send_recommendations(user_id: str, value: bytes, partition: int) -> None:
    """Send one list to ``recommendations`` (the user's own partition)."""
    await topics.recommendations.send(key=user_id.encode(), value=value, partition=partition)


def attribution_gauges() -> None:
    """Views and purchases that came from a list, per list published."""
    metrics.set("rec_flush_at", time.time())
    published = metrics.get("recommendations_published")
    if published:
        metrics.set("rec_click_through", round(metrics.get("rec_attributed", "views") / published, 6))
        metrics.set("rec_conversion", round(metrics.get("rec_attributed", "purchases") / published, 6))


@app.timer(settings.rec_flush_s)
async def flush_pending() -> None:
    """Rank the users whose list could not be ranked when their events came (no index yet)."""
    if not pending_recs or index.size == 0:
        return
    async with publish_lock:  # Redis in the order of Kafka
        await _flush_pending_locked()


async def _flush_pending_locked() -> None:
    batch = list(pending_recs.items())
    pending_recs.clear()
    served: list[tuple[str, bytes]] = []
    for n, (user_id, trigger) in enumerate(batch, 1):
        raw = tables.users.get(user_id)  # no current event: the store looks in every partition
        if raw is None:  # the partition moved to another worker, which owes the list now
            continue
        value = rec_value(UserState.from_dict(raw), trigger)
        if value is None:
            continue
        await send_recommendations(user_id, value, trigger.partition)
        served.append((user_id, value))
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let waiting events in: a long flush must not hold the loop
    await serving.put_many("rec", served)
    attribution_gauges()


def with_repurchase_reason(items: list[tuple[str, float, str]], state: UserState, partition: int,
                           now: int) -> list[tuple[str, float, str]]:
    """When the repurchase model expects the user to buy again soon, say "continue with …" for
    the best item that follows a course they bought (seed 001: repurchase and retention)."""
    prefix = "because you bought "
    i = next((i for i, item in enumerate(items) if item[2].startswith(prefix)), None)
    if i is None:  # nothing follows a bought course: no model call on this path
        return items
    if models_for(partition).repurchase.classifier.predict_proba(churn_features(state, now)) < REPURCHASE_REASON_AT:
        return items
    out = list(items)
    course_id, score, reason = out[i]
    out[i] = (course_id, score, "continue with this after " + reason[len(prefix):])
    return out
