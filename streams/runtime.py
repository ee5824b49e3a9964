"""Worker-scoped objects shared by the agents: profile rules, the Redis serving copy, dirty sets."""

from __future__ import annotations

from models.profile import SegmentRules
from streams.app import settings
from streams.serving import RedisServing

__all__ = ["dirty_profiles", "rules", "serving"]

rules = SegmentRules()
serving = RedisServing(settings.redis_url, prefix=settings.redis_prefix, ttl_s=settings.redis_ttl_s)
#: user_id -> partition, for users whose profile changed since the last flush
dirty_profiles: dict[str, int] = {}
