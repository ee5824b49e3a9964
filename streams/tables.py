"""Changelog-backed tables, declared once. Values are plain dicts (JSON via orjson)."""

from __future__ import annotations

import faust

from streams.app import app, settings

__all__ = ["cooc", "partition_stats", "referral_courses", "referral_models", "retention", "shares", "users"]


def _table(name: str, raw: bool = False) -> faust.Table:
    """A table with str keys and JSON values (``raw``: bytes values, e.g. model checkpoints),
    partitioned like the project's topics; its changelog is ``<app id>-<name>-changelog``."""
    if raw:  # the store's serializer follows value_type: raw bytes, not JSON
        schema = faust.Schema(key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw")
        return app.Table(name, default=None, partitions=settings.partitions, value_type=bytes, schema=schema)
    schema = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")
    return app.Table(name, default=None, partitions=settings.partitions, schema=schema)


#: user_id -> models.profile.UserState.to_bytes() (the state's JSON, kept as bytes: a quarter of
#: the memory of the objects); partitioned like the input topics. Values written as JSON dicts by
#: earlier versions are the same bytes on the changelog and in RocksDB (UserState.from_bytes)
users = _table("users", raw=True)

#: str(partition) -> models.profile.PartitionStats as a dict (watermark, spend totals)
partition_stats = _table("partition-stats")

#: course_id -> co-occurrence row (models.recommend.new_row); partitioned like ``course-cooc``
cooc = _table("cooc")

#: str(partition) -> models.retention.RetentionModels.checkpoint() bytes: the learned churn,
#: repurchase and cluster models and open alert episodes, moving with the partition
retention = _table("retention", raw=True)

#: share_id -> models.referrals.AttributionBook entry (the share, conversion ids, pending
#: conversions, credited totals); partitioned like ``referral-links``
shares = _table("shares")

#: "{partition}/{course_id}" -> referral totals of the course's shares seen on that partition of
#: ``referral-links`` (models.referrals.course_stats_add); the partition in the key keeps entries
#: of different partitions apart in every store
referral_courses = _table("referral-courses")

#: str(partition) -> models.referrals.ReferralModels.checkpoint() bytes (the learned propensity
#: model of the partition's users), moving with the partition
referral_models = _table("referral-models", raw=True)
