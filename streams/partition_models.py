"""The models of one partition and the step's settings, built from the settings: the worker's
per-partition registry and ``coursepulse eval`` build them here, so both run the same models.

Imports no Faust, Kafka or Redis: eval builds its partitions with no broker.
"""

from __future__ import annotations

from models.pooling import SharedModel
from models.profile import PartitionStats, SegmentRules
from models.referrals import ReferralModels
from models.retention import RetentionModels
from models.step import PartitionModels, StepConfig
from streams.settings import Settings

__all__ = ["new_partition_models", "new_referrals", "new_retention", "new_shared_model", "step_config"]

#: the partition's stats are written when its largest event time moved this far since the last write
STATS_PERSIST_MS = 60_000


def new_retention(settings: Settings, rules: SegmentRules, **overrides: object) -> RetentionModels:
    """Fresh retention models (churn, repurchase, clusters, alert policy) from the settings."""
    params: dict[str, object] = dict(
        horizon_days=settings.churn_horizon_days, threshold=settings.churn_threshold, release=settings.churn_release,
        cooldown_days=settings.alert_cooldown_days, first_check_days=settings.first_check_days, rules=rules)
    params.update(overrides)
    return RetentionModels(**params)  # type: ignore[arg-type]


def new_shared_model(settings: Settings) -> SharedModel:
    """The merge of every partition's churn classifier (one per worker, one per evaluator)."""
    return SharedModel(every=settings.churn_share_every)


def new_referrals(settings: Settings) -> ReferralModels:
    """A fresh referral propensity model from the settings."""
    return ReferralModels(horizon_days=settings.referral_horizon_days, threshold=settings.referral_threshold,
                          cooldown_days=settings.referral_cooldown_days, min_examples=settings.referral_min_examples)


def new_partition_models(partition: int, settings: Settings, rules: SegmentRules,
                         stats: PartitionStats | None = None, *, shared: SharedModel | None = None,
                         **retention_overrides: object) -> PartitionModels:
    """Fresh models of one partition (the worker restores learned state into them); ``shared``:
    the merge of every partition's churn classifier it scores with and publishes to."""
    stats = stats or PartitionStats()
    retention = new_retention(settings, rules, **retention_overrides)
    if shared is not None:
        retention.share_with(shared)
    return PartitionModels(partition, stats, retention, new_referrals(settings), persisted_max=stats.max_ts)


def step_config(settings: Settings, rules: SegmentRules) -> StepConfig:
    """The step's settings as the worker folds with them."""
    return StepConfig(dedupe_window=settings.dedupe_window, completion=rules.completion,
                      lateness_ms=int(settings.allowed_lateness_s * 1000), stats_persist_ms=STATS_PERSIST_MS,
                      republish_ms=int(settings.rec_republish_s * 1000))
