"""Decode, validate and de-duplicate user events; fold them into per-user state.

One stream over ``views``, ``purchases`` and ``shares`` (co-partitioned by ``user_id``), so the
worker owning a partition owns all of its users' events and state, with no repartition hop.
A record that cannot be decoded or validated goes to ``events-dlq`` whole, with the reason and
where it came from; the good events around it are not held up.
"""

from __future__ import annotations

import logging
import time

import orjson

from models.profile import PartitionStats, UserState
from models.recommend import cooc_updates, engagement_level
from schemas.codec import INPUT_TYPES, RejectedRecord, dead_letter, decode_event, encode
from schemas.events import Purchase
from agents import score_churn
from agents import attribute_referrals, score_referrals  # referrals (issue 6)
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.runtime import RecTrigger, dirty_profiles, dirty_recs, rules

__all__ = ["ingest"]

log = logging.getLogger(__name__)

_PREFIX_LEN = len(settings.topic_prefix)
_LATENESS_MS = int(settings.allowed_lateness_s * 1000)
_MAX_FUTURE_MS = int(settings.max_future_s * 1000)
#: persist the partition's high mark when it moved this far (event time) since the last write
_STATS_PERSIST_MS = 60_000
_stats: dict[int, PartitionStats] = {}
_persisted_max: dict[int, int] = {}


def partition_stats(partition: int) -> PartitionStats:
    """This worker's view of a partition's stats, loaded from the table on first use."""
    stats = _stats.get(partition)
    if stats is None:
        stats = _stats[partition] = PartitionStats.from_dict(tables.partition_stats.get(str(partition)))
        _persisted_max[partition] = stats.max_ts
    return stats


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:  # noqa: ANN001 - faust signal
    """Drop in-memory partition state of revoked partitions; reload from the tables when back."""
    for tp in revoked:
        _stats.pop(tp.partition, None)
        _persisted_max.pop(tp.partition, None)
        score_churn.forget_partition(tp.partition)


async def _reject(message, exc: RejectedRecord) -> None:  # noqa: ANN001 - faust Message
    metrics.inc("dlq", exc.kind)
    record = dead_letter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        error=str(exc),
        error_kind=exc.kind,
    )
    await topics.dlq.send(key=message.key or b"", value=encode(record))


@app.agent(topics.user_events)
async def ingest(stream):  # noqa: ANN001 - faust stream
    """Per event: decode, validate, dedupe, update user state, send co-occurrence gains, mark dirty."""
    async for event in stream.events():
        message = event.message
        logical = message.topic[_PREFIX_LEN:]
        try:
            ev = decode_event(
                logical,
                message.key,
                message.value,
                max_bytes=settings.max_event_bytes,
                max_future_ms=_MAX_FUTURE_MS,
                record_type=INPUT_TYPES.get(logical),
            )
        except RejectedRecord as exc:
            await _reject(message, exc)
            continue
        partition = message.partition
        raw = tables.users.get(ev.user_id)
        state = UserState.from_dict(raw) if raw else UserState(ev.user_id)
        first_purchase = state.purchases == 0
        course_id = getattr(ev, "course_id", None)
        old_level = engagement_level(state.courses.get(course_id), rules.completion) if course_id else 0
        if not state.apply(ev, dedupe_window=settings.dedupe_window, completion=rules.completion):
            metrics.inc("duplicates", logical)
            continue
        metrics.inc("events_in", logical)
        if getattr(ev, "rec_id", None) is not None:
            metrics.inc("rec_attributed", logical)
        if course_id is not None and logical != "shares":
            new_level = engagement_level(state.courses.get(course_id), rules.completion)
            for update in cooc_updates(state, course_id, old_level, new_level, ev.ts, completion=rules.completion):
                await topics.course_cooc.send(key=update.course_id.encode(), value=orjson.dumps(update.to_dict()))
                metrics.inc("cooc_updates_sent")
        state.partition = partition
        score_referrals.on_user_event(ev, state, partition)  # referrals (issue 6): stats, model, candidate check
        tables.users[ev.user_id] = state.to_dict()
        await attribute_referrals.referral_links(ev)  # referrals (issue 6): share/conversion -> referral-links
        await score_referrals.send_candidates()  # referrals (issue 6)
        stats = partition_stats(partition)
        is_purchase = isinstance(ev, Purchase)
        moved = stats.observe(
            ev.ts,
            amount=ev.amount if is_purchase else 0.0,
            new_buyer=is_purchase and first_purchase,
        )
        rm = score_churn.models_for(partition)
        rm.observe(state, ev.ts, is_purchase, stats.avg_ltv)
        if is_purchase or (moved and stats.max_ts - _persisted_max.get(partition, 0) >= _STATS_PERSIST_MS):
            tables.partition_stats[str(partition)] = stats.to_dict()
            _persisted_max[partition] = stats.max_ts
            await score_churn.on_watermark(partition, stats.watermark(_LATENESS_MS), stats.avg_ltv)
            score_referrals.on_watermark(partition, stats.watermark(_LATENESS_MS))  # referrals (issue 6)
        score_churn.checkpoint(partition, settings.checkpoint_events)
        metrics.set("watermark_ms", stats.watermark(_LATENESS_MS), str(partition))
        metrics.set("event_lag_ms", time.time() * 1000 - ev.ts)
        dirty_profiles[ev.user_id] = partition
        dirty_recs[ev.user_id] = RecTrigger(partition, ev.event_id, ev.ts)
