"""Churn alerts, including for users who went silent: the partition's watermark drives them.

The retention models of a partition (:class:`models.retention.RetentionModels`) learn from every
event (``observe``, called by the ingest agent) and, whenever the partition's event-time
watermark moves, score the users whose silence check is due — an ordered schedule keyed by
next-check time, never a scan of every user — and decide alerts with hysteresis and a
cool-down. Their learned state is checkpointed to the ``retention`` table every
``COURSEPULSE_CHECKPOINT_EVENTS`` events, so it moves with the partition and survives restarts.
"""

from __future__ import annotations

import logging
import uuid

from models.profile import UserState
from models.retention import AlertDecision, RetentionModels
from schemas.codec import encode
from schemas.outputs import ChurnAlert, Factor
from streams import tables, topics
from streams.metrics import metrics
from streams.providers import provide
from streams.runtime import EveryN, PartitionScope, index, new_retention, retention

__all__ = ["alert_record", "checkpoint", "models_for", "on_watermark"]

log = logging.getLogger(__name__)
_NS = uuid.UUID("0b3a52f5-3c8e-4a43-9a83-5b6f2b9f3c11")
_checkpoints = EveryN()


@provide("retention_models")
def models_for(partition: int) -> RetentionModels:
    """The partition's retention models: restored from its table (and re-scheduled) on first use."""
    rm = retention.get(partition)
    if rm is None:
        blob = tables.retention.get(str(partition))
        rm = new_retention()  # every parameter from the current settings
        outcome = rm.restore_learned(blob) if blob else "new"
        states = (UserState.from_dict(v) for v in tables.users.values() if v.get("partition") == partition)
        n = rm.reschedule_all(states)
        retention[partition] = rm
        metrics.inc("model_restores", f"retention:{outcome}")
        log.info("partition %d: retention models %s, %d users scheduled for silence checks", partition, outcome, n)
    return rm


def forget_partition(partition: int) -> None:
    """The partition moved away: drop its in-memory models (its table has the checkpoint)."""
    retention.pop(partition, None)
    _checkpoints.forget(partition)


def alert_record(a: AlertDecision) -> ChurnAlert:
    return ChurnAlert(
        alert_id=str(uuid.uuid5(_NS, f"{a.user_id}/{a.at}")),
        user_id=a.user_id,
        risk=a.risk,
        threshold=a.threshold,
        days_inactive=a.days_inactive,
        segment=a.segment,
        factors=[Factor(name=f["name"], value=round(float(f["value"]), 4), contribution=round(float(f["contribution"]), 4))
                 for f in a.factors],
        action=a.action,
        generated_at=a.at,
    )


async def on_watermark(scope: PartitionScope, watermark: int, avg_ltv: float) -> int:
    """Score due users of the scope's partition at the new watermark and send their alerts."""
    partition = scope.partition
    scope.enter()
    rm = models_for(partition)

    def get_state(user_id: str) -> UserState | None:
        raw = scope.get(tables.users, user_id)
        return UserState.from_dict(raw) if raw else None

    def title_of(course_id: str) -> str:
        i = index.pos.get(course_id)
        return index.meta[i].title if i is not None else course_id

    alerts = rm.on_watermark(watermark, get_state, avg_ltv, title_of=title_of)
    for a in alerts:
        await topics.churn_alerts.send(key=a.user_id.encode(), value=encode(alert_record(a)), partition=partition)
        metrics.inc("churn_alerts", a.segment)
    metrics.set("churn_drift_count", rm.churn.classifier.drift_count, str(partition))
    return len(alerts)


def checkpoint(partition: int, every: int, events: int = 1) -> bool:
    """Count ``events``; write the partition's checkpoint every ``every`` events (in the stream,
    with an event of the partition current)."""
    if not _checkpoints.due(partition, every, events):
        return False
    tables.retention[str(partition)] = models_for(partition).checkpoint()
    metrics.inc("retention_checkpoints")
    return True
