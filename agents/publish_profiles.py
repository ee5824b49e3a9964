"""User profiles, published by the step that changed them: in the ingest batch (or the referral
credit) that folded the user's events, before that batch's offsets are committed.

Faust flushes the producer before it commits offsets, so a profile sent here is in Kafka before
the events that caused it are marked consumed; a crash in between redelivers the events, and the
ingest agent owes every user of a redelivered (duplicate) event a fresh profile again. A profile
is built as of the partition's watermark and written to the compacted ``user-profiles`` topic
and to the Redis serving copy.
"""

from __future__ import annotations

import logging

from agents import score_referrals  # referrals (issue 6)
from agents.score_churn import models_for
from models.profile import PartitionStats, UserState, build_profile
from schemas.codec import encode
from streams import topics
from streams.app import settings
from streams.metrics import metrics
from streams.runtime import rules

__all__ = ["profile_value", "send_profile"]

log = logging.getLogger(__name__)
_LATENESS_MS = int(settings.allowed_lateness_s * 1000)


def profile_value(state: UserState, partition: int, stats: PartitionStats) -> bytes:
    """The ``user-profiles`` record of ``state`` as of its partition's watermark (JSON bytes).

    Call it with an event of ``partition`` current: the partition's models may be loaded from
    their table on first use.
    """
    now = stats.watermark(_LATENESS_MS)
    extra = models_for(partition).extras(state, max(now, state.last_ts), stats.avg_ltv)
    extra.update(score_referrals.extras(state, max(now, state.last_ts), partition))  # referrals (issue 6)
    profile = build_profile(state, now, stats.avg_ltv, rules, extra=extra)
    metrics.inc("profiles_published", profile.segment)
    return encode(profile)


async def send_profile(user_id: str, value: bytes, partition: int) -> None:
    """Send one profile to ``user-profiles`` (the user's own partition)."""
    await topics.user_profiles.send(key=user_id.encode(), value=value, partition=partition)
