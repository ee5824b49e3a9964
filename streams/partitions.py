"""This worker's in-memory state of the partitions it owns, in one registry with one revoke hook.

Per partition: its :class:`models.step.PartitionModels` (stats, retention and referral models,
restored from their tables on first use), the count of events since each model's last
checkpoint, and the referral totals per course of its ``referral-links`` partition. A revoked
partition's entries are all dropped in :func:`_forget_revoked` and reloaded from the tables when
the partition comes back (to this or another worker); an assigned ``course-cooc`` partition has
every row's neighbours published again (:func:`_on_assigned`: the changed rows of its previous
owner were in that owner's memory only).
"""

from __future__ import annotations

import logging
from typing import Any

from models.profile import PartitionStats, UserState
from models.step import PartitionModels
from streams import tables
from streams.app import app, settings
from streams.metrics import metrics
from streams.partition_models import new_partition_models
from streams.runtime import churn_share, handover, rules

__all__ = ["PartitionRegistry", "registry"]

log = logging.getLogger(__name__)


class PartitionRegistry:
    """Partition -> its in-memory state, loaded from the tables on first use. Load with an event
    of the partition current (its tables are read in that partition)."""

    def __init__(self) -> None:
        self._models: dict[int, PartitionModels] = {}
        self._since_checkpoint: dict[tuple[str, int], int] = {}
        self._courses: dict[int, dict[str, dict[str, Any]]] = {}
        self._ends: dict[tuple[str, int], int] = {}

    def loaded_retention(self) -> dict[int, Any]:
        """Partition -> its retention models, for the partitions loaded so far (read by /metrics)."""
        return {partition: pm.retention for partition, pm in list(self._models.items())}

    def models(self, partition: int) -> PartitionModels:
        """The partition's stats and models: restored from their tables (and the silence checks
        re-scheduled from its users' states) on first use; every parameter from the settings."""
        pm = self._models.get(partition)
        if pm is None:
            stats = PartitionStats.from_dict(tables.partition_stats.get(str(partition)))
            pm = new_partition_models(partition, settings, rules, stats, shared=churn_share)
            blob = tables.retention.get(str(partition))
            outcome = pm.retention.restore_learned(blob) if blob else "new"
            states = (UserState.from_bytes(raw) for raw in tables.users.values()
                      if UserState.partition_in(raw) == partition)
            n = pm.retention.reschedule_all(states)
            metrics.inc("model_restores", f"retention:{outcome}")
            log.info("partition %d: retention models %s, %d users scheduled for silence checks", partition, outcome, n)
            blob = tables.referral_models.get(str(partition))
            outcome = pm.referrals.restore_learned(blob) if blob else "new"
            metrics.inc("model_restores", f"referral:{outcome}")
            log.info("partition %d: referral model %s", partition, outcome)
            self._models[partition] = pm
        return pm

    def checkpoint_due(self, kind: str, partition: int, every: int, events: int = 1) -> bool:
        """Count ``events`` of ``kind``'s model on the partition; True once ``every`` were counted
        since the last time it said so."""
        key = (kind, partition)
        n = self._since_checkpoint.get(key, 0) + events
        if n < every:
            self._since_checkpoint[key] = n
            return False
        self._since_checkpoint[key] = 0
        return True

    def course_totals(self, partition: int) -> dict[str, dict[str, Any]]:
        """course_id -> referral totals seen on this ``referral-links`` partition (from its table)."""
        totals = self._courses.get(partition)
        if totals is None:
            prefix = f"{partition}/"
            totals = self._courses[partition] = {k[len(prefix):]: dict(v) for k, v in tables.referral_courses.items()
                                                 if k.startswith(prefix) and v}
        return totals

    def all_course_totals(self) -> list[dict[str, dict[str, Any]]]:
        """The loaded partitions' course totals."""
        return list(self._courses.values())

    def redelivery_end(self, tp: Any, consumer: Any) -> int:  # noqa: ANN401 - faust TP and Consumer
        """The offset below which an input record may have been processed before (by this
        worker's previous run or another worker: its outputs may have been sent, or its state
        write lost): the end of the log when this worker first read the partition after it was
        assigned (the consumer's highwater then: a fetch reports the true end, on Tansu too).
        Unknown yet: every offset."""
        key = (tp.topic, tp.partition)
        end = self._ends.get(key)
        if end is None:
            try:
                end = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - no fetch answer yet
                end = None
            if end is None or end < 0:
                return 2**63
            self._ends[key] = end
        return end

    def forget(self, partition: int) -> None:
        """The partition moved away: drop everything held for it (its tables keep the rest)."""
        self._models.pop(partition, None)
        self._courses.pop(partition, None)
        for key in [k for k in self._ends if k[1] == partition]:
            del self._ends[key]
        for key in [k for k in self._since_checkpoint if k[1] == partition]:
            del self._since_checkpoint[key]


registry = PartitionRegistry()


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:  # noqa: ANN001 - faust signal
    """Drop the in-memory state of revoked partitions; reloaded from the tables when back."""
    for partition in {tp.partition for tp in revoked}:
        registry.forget(partition)


@app.on_partitions_assigned.connect
async def _on_assigned(app, assigned, **kwargs) -> None:  # noqa: ANN001 - faust signal
    """Assigned ``course-cooc`` partitions: every row's neighbours to be published again, once
    the table is recovered (``agents.accumulate_similarity``)."""
    name = settings.topic("course-cooc")
    handover.rescan_partitions.update(tp.partition for tp in assigned if tp.topic == name)
