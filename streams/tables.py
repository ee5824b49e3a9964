"""Changelog-backed tables, declared once. Values are plain dicts (JSON via orjson)."""

from __future__ import annotations

import faust

from streams.app import app, settings

__all__ = ["cooc", "partition_stats", "referral_courses", "referral_models", "retention", "shares", "users"]

#: user_id -> models.profile.UserState as a dict; partitioned like the input topics
users = app.Table(
    "users",
    default=None,
    partitions=settings.partitions,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
)

#: str(partition) -> models.profile.PartitionStats as a dict (watermark, spend totals)
partition_stats = app.Table(
    "partition-stats",
    default=None,
    partitions=settings.partitions,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
)

#: course_id -> co-occurrence row (models.recommend.new_row); partitioned like ``course-cooc``
cooc = app.Table(
    "cooc",
    default=None,
    partitions=settings.partitions,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
)

#: str(partition) -> models.retention.RetentionModels.checkpoint() bytes: the learned churn,
#: repurchase and cluster models and open alert episodes, moving with the partition
retention = app.Table(
    "retention",
    default=None,
    partitions=settings.partitions,
    value_type=bytes,  # the store's serializer follows value_type: raw bytes, not JSON
    schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"),
)

#: share_id -> models.referrals.AttributionBook entry (the share, conversion ids, pending
#: conversions, credited totals); partitioned like ``referral-links``
shares = app.Table(
    "shares",
    default=None,
    partitions=settings.partitions,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
)

#: "{partition}/{course_id}" -> referral totals of the course's shares seen on that partition of
#: ``referral-links`` (models.referrals.course_stats_add); the partition in the key keeps entries
#: of different partitions apart in every store
referral_courses = app.Table(
    "referral-courses",
    default=None,
    partitions=settings.partitions,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
)

#: str(partition) -> models.referrals.ReferralModels.checkpoint() bytes (the learned propensity
#: model of the partition's users), moving with the partition
referral_models = app.Table(
    "referral-models",
    default=None,
    partitions=settings.partitions,
    value_type=bytes,
    schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"),
)
