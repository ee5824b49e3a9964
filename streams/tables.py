"""Changelog-backed tables, declared once. Values are plain dicts (JSON via orjson)."""

from __future__ import annotations

import faust

from streams.app import app, settings

__all__ = ["cooc", "partition_stats", "retention", "users"]

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
