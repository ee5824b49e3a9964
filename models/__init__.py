"""Pure model code: no Kafka, Faust or Redis imports; runs live, in replay and in evaluation."""

from __future__ import annotations

from models.profile import (
    DAY_MS,
    PartitionStats,
    SegmentRules,
    UserState,
    build_profile,
    rfm_scores,
)

__all__ = ["DAY_MS", "PartitionStats", "SegmentRules", "UserState", "build_profile", "rfm_scores"]
