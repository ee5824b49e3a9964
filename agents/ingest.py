"""Decode, validate and de-duplicate user events; fold them into per-user state.

One stream over ``views``, ``purchases`` and ``shares`` (co-partitioned by ``user_id``), so the
worker owning a partition owns all of its users' events and state, with no repartition hop.
A record that cannot be decoded or validated goes to ``events-dlq`` whole, with the reason and
where it came from; the good events around it are not held up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from agents import attribute_referrals, score_churn, score_referrals
from models.profile import DAY_MS, PartitionStats, UserState
from models.recommend import CoocRises, RowUpdate, engagement_level
from schemas.codec import INPUT_TYPES, RejectedRecord, dead_letter, decode_event, encode
from schemas.events import Purchase
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.partitioning import partition_for
from streams.runtime import RecTrigger, as_current_event, dirty_profiles, dirty_recs, rules

__all__ = ["cooc_bundles", "ingest", "partition_stats", "process_batch"]

log = logging.getLogger(__name__)

_PREFIX_LEN = len(settings.topic_prefix)
_LATENESS_MS = int(settings.allowed_lateness_s * 1000)
_MAX_FUTURE_MS = int(settings.max_future_s * 1000)
_HL_MS = settings.half_life_days * DAY_MS
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


def cooc_bundles(updates: list[RowUpdate], partitions: int) -> dict[int, list[dict[str, Any]]]:
    """A batch's row updates (one per course, merged by :meth:`CoocRises.merged_updates`) grouped
    by the ``course-cooc`` partition that owns each course (the one a send keyed by ``course_id``
    would pick): one message per partition instead of one per course (each Faust message costs
    about what an empty agent spends on one; see docs/benchmark.md)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for update in updates:
        out.setdefault(partition_for(update.course_id.encode(), partitions), []).append(update.to_dict())
    return out


@app.agent(topics.user_events)
async def ingest(stream):  # noqa: ANN001 - faust stream
    """Events in batches: per event decode, validate, dedupe and fold into the user's state; per
    batch one state write per user, one co-occurrence message per course, one stats write per
    partition (the per-message cost of Faust and the producer dominates, so work is coalesced)."""
    async for batch in stream.take_events(settings.ingest_batch, settings.ingest_batch_within_s):
        await process_batch(batch)


async def process_batch(batch) -> None:  # noqa: ANN001, C901 - faust events; one pass, kept in one place
    by_user: dict[str, list[tuple[Any, Any, str]]] = {}
    for event in batch:
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
        by_user.setdefault(ev.user_id, []).append((event, ev, logical))

    rises = CoocRises(completion=rules.completion)
    links: list[Any] = []
    moved: dict[int, Any] = {}  # partition -> an event of it, when its stats must be written
    counted: dict[int, list[Any]] = {}  # partition -> [an event of it, events applied]
    for user_id, items in by_user.items():
        try:
            last = _fold_user(user_id, items, rises, links, moved, counted)
        except Exception as exc:  # noqa: BLE001 - a bug on one user's events must not lose the batch
            log.exception("internal error on %d events of user %r; sent to the DLQ", len(items), user_id)
            for event, _, _ in items:
                await _reject(event.message, RejectedRecord(f"internal error: {exc!r}", kind="internal"))
            continue
        if last is None:
            continue
        event, ev, partition, state = last
        as_current_event(event)
        tables.users[user_id] = state.to_dict()
        dirty_profiles[user_id] = partition
        dirty_recs[user_id] = RecTrigger(partition, ev.event_id, ev.ts)
    # the co-occurrence gains of the whole batch, merged per course row, in one kernel call
    updates = rises.merged_updates(_HL_MS)
    await _flush_batch(updates, links, moved, counted, by_user)


def _fold_user(user_id: str, items: list[tuple[Any, Any, str]], rises: CoocRises, links: list[Any],
               moved: dict[int, Any], counted: dict[int, list[Any]]) -> tuple[Any, Any, int, UserState] | None:
    """Apply one user's events of the batch to their state (no await: nothing interleaves)."""
    raw = tables.users.get(user_id)
    state = UserState.from_dict(raw) if raw else UserState(user_id)
    last = None
    for event, ev, logical in items:
        as_current_event(event)  # table writes below (model checkpoints) go to this partition
        partition = event.message.partition
        first_purchase = state.purchases == 0
        course_id = getattr(ev, "course_id", None)
        old_level = engagement_level(state.courses.get(course_id), rules.completion) if course_id else 0
        if not state.apply(ev, dedupe_window=settings.dedupe_window, completion=rules.completion):
            metrics.inc("duplicates", logical)
            continue
        last = (event, ev, partition)
        metrics.inc("events_in", logical)
        if getattr(ev, "rec_id", None) is not None:
            metrics.inc("rec_attributed", logical)
        if course_id is not None and logical != "shares":
            new_level = engagement_level(state.courses.get(course_id), rules.completion)
            rises.add(state, course_id, old_level, new_level, ev.ts)
        state.partition = partition
        # referrals (issue 6): stats, model, candidate check; no await since the state was read
        score_referrals.on_user_event(ev, state, partition)
        links.append(ev)
        stats = partition_stats(partition)
        is_purchase = isinstance(ev, Purchase)
        if stats.observe(ev.ts, amount=ev.amount if is_purchase else 0.0,
                         new_buyer=is_purchase and first_purchase) or is_purchase:
            if is_purchase or stats.max_ts - _persisted_max.get(partition, 0) >= _STATS_PERSIST_MS:
                moved[partition] = event
        score_churn.models_for(partition).observe(state, ev.ts, is_purchase, stats.avg_ltv)
        entry = counted.setdefault(partition, [event, 0])
        entry[1] += 1
    return None if last is None else (*last, state)


async def _flush_batch(updates: list[RowUpdate], links: list[Any], moved: dict[int, Any],
                       counted: dict[int, list[Any]], by_user: dict[str, list[tuple[Any, Any, str]]]) -> None:
    """Sends and per-partition writes of a batch, after every user's state was folded."""
    for partition, bundle in cooc_bundles(updates, topics.course_cooc.partitions or settings.partitions).items():
        await topics.course_cooc.send(key=str(partition).encode(), value=orjson.dumps({"updates": bundle}),
                                      partition=partition)
        metrics.inc("cooc_bundles_sent")
    metrics.inc("cooc_updates_sent", by=len(updates))
    for ev in links:
        await attribute_referrals.referral_links(ev)  # referrals (issue 6): share/conversion -> referral-links
    await score_referrals.send_candidates()  # referrals (issue 6)
    for partition, event in moved.items():
        stats = partition_stats(partition)
        as_current_event(event)
        tables.partition_stats[str(partition)] = stats.to_dict()
        _persisted_max[partition] = stats.max_ts
        watermark = stats.watermark(_LATENESS_MS)
        await score_churn.on_watermark(partition, watermark, stats.avg_ltv)
        score_referrals.on_watermark(partition, watermark)  # referrals (issue 6)
    for partition, (event, n) in counted.items():
        as_current_event(event)
        score_churn.checkpoint(partition, settings.checkpoint_events, n)
        metrics.set("watermark_ms", partition_stats(partition).watermark(_LATENESS_MS), str(partition))
    if by_user:
        metrics.set("event_lag_ms", time.time() * 1000 - max(items[-1][1].ts for items in by_user.values()))
