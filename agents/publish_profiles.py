"""Publish changed user profiles, coalesced: at most one message per user per flush interval.

The ingest agent marks users dirty; this timer turns each dirty user's state into a profile as
of the partition's watermark, sends it to the compacted ``user-profiles`` topic and writes the
serving copy to Redis in one pipeline.
"""

from __future__ import annotations

import asyncio
import logging

from agents import score_referrals  # referrals (issue 6)
from agents.ingest import partition_stats
from agents.score_churn import models_for
from models.profile import UserState, build_profile
from schemas.codec import encode
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.runtime import YIELD_EVERY, dirty_profiles, rules, serving

__all__ = ["flush_profiles"]

log = logging.getLogger(__name__)
_LATENESS_MS = int(settings.allowed_lateness_s * 1000)


@app.timer(settings.profile_flush_s)
async def flush_profiles() -> None:
    """Send every dirty user's profile once; copy them to Redis."""
    if not dirty_profiles:
        return
    batch = list(dirty_profiles.items())
    dirty_profiles.clear()
    served: list[tuple[str, bytes]] = []
    for n, (user_id, partition) in enumerate(batch, 1):
        raw = tables.users.get(user_id)
        if raw is None:  # partition moved to another worker since it was marked
            continue
        stats = partition_stats(partition)
        state = UserState.from_dict(raw)
        now = stats.watermark(_LATENESS_MS)
        extra = models_for(partition).extras(state, max(now, state.last_ts), stats.avg_ltv)
        extra.update(score_referrals.extras(state, max(now, state.last_ts), partition))  # referrals (issue 6)
        profile = build_profile(state, now, stats.avg_ltv, rules, extra=extra)
        value = encode(profile)
        await topics.user_profiles.send(key=user_id.encode(), value=value, partition=partition)
        metrics.inc("profiles_published", profile.segment)
        served.append((user_id, value))
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let waiting events in: a long flush must not hold the loop
    await serving.put_many("profile", served)
