"""Churn alerts, including for users who went silent: the partition's watermark drives them.

The retention models of a partition (:class:`models.retention.RetentionModels`) learn from every
event and, whenever the partition's event-time watermark moves, score the users whose silence
check is due — an ordered schedule keyed by next-check time, never a scan of every user — and
decide alerts with hysteresis and a cool-down. Both happen inside the ingest step
(:func:`models.step.step`); the ingest agent sends the alerts (``streams.publish.send_alert``)
and checkpoints the models to the ``retention`` table every ``COURSEPULSE_CHECKPOINT_EVENTS``
events. The models live in the worker's partition registry (``streams.partitions``), so they
move with the partition and survive restarts. This module only exposes them to readers.
"""

from __future__ import annotations

from models.retention import RetentionModels
from streams.partitions import registry
from streams.providers import provide
from streams.publish import alert_record

__all__ = ["alert_record", "models_for"]


@provide("retention_models")
def models_for(partition: int) -> RetentionModels:
    """The partition's retention models (restored from its table on first use)."""
    return registry.models(partition).retention
