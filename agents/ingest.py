"""Decode, validate and de-duplicate user events; fold them into per-user state.

One stream over ``views``, ``purchases`` and ``shares`` (co-partitioned by ``user_id``), so the
worker owning a partition owns all of its users' events and state, with no repartition hop.
A record that cannot be decoded or validated goes to ``events-dlq`` whole, with the reason and
where it came from; the good events around it are not held up. A record on a partition other than
the one its key belongs to (a producer with another partitioner) is re-sent to the owning
partition, or dead-lettered as ``wrong_partition`` when re-routing is off.

Every table access of a batch goes through the :class:`~streams.runtime.PartitionScope` of the
partition being folded, and what the batch owes its users (a profile, a list, referral
candidates, links, co-occurrence bundles) is sent before the batch is acknowledged, so before its
offsets are committed (Faust flushes the producer first). A user with only repeated events in a
batch (a redelivery after a crash) is owed their outputs again: the crash may have come between
the state's changelog write and the outputs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from agents import attribute_referrals, score_churn, score_referrals
from agents.publish_profiles import profile_value, send_profile
from agents.publish_recommendations import attribution_gauges, rec_value, send_recommendations
from models.profile import DAY_MS, PartitionStats, UserState
from models.recommend import CoocRises, RowUpdate, engagement_level
from schemas.codec import INPUT_TYPES, RejectedRecord, dead_letter, decode_event, encode
from schemas.events import Purchase
from streams import tables, topics
from streams.app import app, settings
from streams.commits import release_unprocessed
from streams.continuity import continuity, records_between
from streams.metrics import metrics
from streams.partitioning import partition_for
from streams.providers import provide
from streams.runtime import (
    PartitionScope,
    RecTrigger,
    pending_recs,
    publish_lock,
    rules,
    serving,
)

__all__ = ["cooc_bundles", "ingest", "owner_of", "partition_stats", "process_batch"]

log = logging.getLogger(__name__)

_PREFIX_LEN = len(settings.topic_prefix)
_LATENESS_MS = int(settings.allowed_lateness_s * 1000)
_CONTINUITY = settings.offset_continuity
continuity.track(settings.topic(name) for name in topics.INPUT_TOPICS)
_MAX_FUTURE_MS = int(settings.max_future_s * 1000)
_HL_MS = settings.half_life_days * DAY_MS
#: persist the partition's high mark when it moved this far (event time) since the last write
_STATS_PERSIST_MS = 60_000
_stats: dict[int, PartitionStats] = {}
_reroute_topics: dict[str, Any] = {}
_persisted_max: dict[int, int] = {}


@provide("partition_stats")
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


def owner_of(key: bytes) -> int:
    """The input partition a record keyed ``key`` (a user id) belongs to: Kafka's default."""
    return partition_for(key, settings.partitions)


async def _misrouted(message, owner: int) -> None:  # noqa: ANN001 - faust Message
    """A good record on the wrong partition: re-send its original bytes to the owning partition
    of the same topic (processed there, by the owner of the user's state), or dead-letter it."""
    logical = message.topic[_PREFIX_LEN:]
    metrics.inc("mispartitioned", logical)
    if settings.reroute_mispartitioned:
        topic = _reroute_topics.get(message.topic)
        if topic is None:
            topic = _reroute_topics[message.topic] = app.topic(
                message.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        await topic.send(key=message.key, value=message.value, partition=owner)
        return
    await _reject(message, RejectedRecord(
        f"record on partition {message.partition}, but Kafka's default partitioner puts key "
        f"{message.key[:64]!r} on partition {owner} (set the producer's partitioner to murmur2)",
        kind="wrong_partition"))


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
    batch one state write per user, one co-occurrence message per course-cooc partition, one
    stats write per partition, and each changed user's profile and list."""
    async for batch in stream.take_events(settings.ingest_batch, settings.ingest_batch_within_s):
        await process_batch(batch)
        if continuity.gaps:  # records the consumer skipped: read them again (streams/continuity.py)
            await continuity.heal(app.consumer, _probe_gap)


async def _probe_gap(topic: str, partition: int, start: int, end: int) -> bool:
    return await records_between(settings, topic, partition, start, end)


@app.timer(5.0)
async def _watch_continuity() -> None:
    """Tail gaps: a partition read past what was processed while the stream idled."""
    if _CONTINUITY and app.flow_control.is_active() and not app.rebalancing:
        await continuity.watch(app.consumer, _probe_gap)


class _Owed:
    """A user whose profile and list the batch owes: the state and the triggering event."""

    __slots__ = ("partition", "state", "trigger", "user_id")

    def __init__(self, user_id: str, partition: int, state: UserState, trigger: RecTrigger) -> None:
        self.user_id = user_id
        self.partition = partition
        self.state = state
        self.trigger = trigger


async def process_batch(batch) -> None:  # noqa: ANN001 - faust events
    """Fold a batch of input events, partition by partition, and send what it owes."""
    by_partition: dict[int, dict[str, list[tuple[Any, Any, str]]]] = {}
    for event in batch:
        message = event.message
        if _CONTINUITY and not continuity.accept(message.topic, message.partition, message.offset):
            release_unprocessed(app.consumer, message)  # comes again, in order, after the heal
            continue
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
        owner = owner_of(message.key)  # the key is the user id (checked by decode_event)
        if owner != message.partition:
            await _misrouted(message, owner)
            continue
        by_partition.setdefault(message.partition, {}).setdefault(ev.user_id, []).append((event, ev, logical))

    rises = CoocRises(completion=rules.completion)
    links: list[Any] = []
    moved: dict[int, PartitionScope] = {}  # partitions whose stats must be written
    counted: dict[int, tuple[PartitionScope, int]] = {}  # partition -> (scope, events applied)
    owed: list[_Owed] = []
    failed: list[tuple[list[tuple[Any, Any, str]], Exception]] = []
    last_ts = 0
    for partition, users in by_partition.items():
        scope = PartitionScope(next(iter(users.values()))[0][0])
        scope.enter()  # model loads and checkpoints below read and write this partition's tables
        applied_here = 0
        for user_id, items in users.items():
            try:
                applied, repeated, state, trigger = _fold_user(scope, user_id, items, rises, links, moved)
            except Exception as exc:  # noqa: BLE001 - a bug on one user's events must not lose the batch
                log.exception("internal error on %d events of user %r; sent to the DLQ", len(items), user_id)
                failed.append((items, exc))
                scope.enter()
                continue
            if applied or repeated:
                # a repeat is a redelivery: the local store (RocksDB survives a kill -9) may hold
                # state whose changelog record died with the producer's buffer, and the repeats
                # would then change nothing and write nothing; writing the state again lets the
                # changelog catch up with what the user's outputs are built from
                scope.put(tables.users, user_id, state.to_dict())
                applied_here += applied
            owed.append(_Owed(user_id, partition, state, trigger))
            last_ts = max(last_ts, trigger.ts)
        if applied_here:
            counted[partition] = (scope, applied_here)
    for items, exc in failed:
        for event, _, _ in items:
            await _reject(event.message, RejectedRecord(f"internal error: {exc!r}", kind="internal"))
    # the co-occurrence gains of the whole batch, merged per course row, in one kernel call
    updates = rises.merged_updates(_HL_MS)
    await _flush_batch(updates, links, moved, counted, owed)
    if by_partition:
        metrics.set("event_lag_ms", time.time() * 1000 - last_ts)


def _fold_user(scope: PartitionScope, user_id: str, items: list[tuple[Any, Any, str]], rises: CoocRises,
               links: list[Any], moved: dict[int, PartitionScope]) -> tuple[int, bool, UserState, RecTrigger]:
    """Apply one user's events of the batch to their state, read in the user's partition (no
    await: nothing interleaves); return how many applied, whether any was a repeat, the state
    and the trigger of the user's list."""
    raw = scope.get(tables.users, user_id)
    state = UserState.from_dict(raw) if raw else UserState(user_id)
    partition = scope.partition
    stats = partition_stats(partition)
    churn_models = score_churn.models_for(partition)
    applied = 0
    first_repeat_ts: int | None = None
    for _, ev, logical in items:
        first_purchase = state.purchases == 0
        course_id = getattr(ev, "course_id", None)
        old_level = engagement_level(state.courses.get(course_id), rules.completion) if course_id else 0
        if not state.apply(ev, dedupe_window=settings.dedupe_window, completion=rules.completion):
            metrics.inc("duplicates", logical)
            if first_repeat_ts is None:
                first_repeat_ts = ev.ts
            continue
        applied += 1
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
        is_purchase = isinstance(ev, Purchase)
        if stats.observe(ev.ts, amount=ev.amount if is_purchase else 0.0,
                         new_buyer=is_purchase and first_purchase) or is_purchase:
            if is_purchase or stats.max_ts - _persisted_max.get(partition, 0) >= _STATS_PERSIST_MS:
                moved[partition] = scope
        churn_models.observe(state, ev.ts, is_purchase, stats.avg_ltv)
    repeated = first_repeat_ts is not None
    if repeated:  # a redelivery re-owes a candidate decided by its events, and the stats write
        score_referrals.reowe_candidate(state, partition, first_repeat_ts)
        moved[partition] = scope
    # the list is owed for the user's latest applied event (a repeat's batch re-owes it): its id
    # names the list, so a redelivery, whatever order its topics interleave in, makes the same one
    last = items[-1][1]
    ids = state.recent_ids
    if ids and ids[-1] != last.event_id:
        ts = next((ev.ts for _, ev, _ in items if ev.event_id == ids[-1]), state.last_ts)
        return applied, repeated, state, RecTrigger(partition, ids[-1], ts)
    return applied, repeated, state, RecTrigger(partition, last.event_id, last.ts)


async def _flush_batch(updates: list[RowUpdate], links: list[Any], moved: dict[int, PartitionScope],
                       counted: dict[int, tuple[PartitionScope, int]], owed: list[_Owed]) -> None:
    """Sends and per-partition writes of a batch, after every user's state was folded."""
    for partition, bundle in cooc_bundles(updates, topics.course_cooc.partitions or settings.partitions).items():
        await topics.course_cooc.send(key=str(partition).encode(), value=orjson.dumps({"updates": bundle}),
                                      partition=partition)
        metrics.inc("cooc_bundles_sent")
    metrics.inc("cooc_updates_sent", by=len(updates))
    for ev in links:
        await attribute_referrals.referral_links(ev)  # referrals (issue 6): share/conversion -> referral-links
    await score_referrals.send_candidates()  # referrals (issue 6)
    for partition, scope in moved.items():
        stats = partition_stats(partition)
        scope.put(tables.partition_stats, str(partition), stats.to_dict())
        _persisted_max[partition] = stats.max_ts
        watermark = stats.watermark(_LATENESS_MS)
        await score_churn.on_watermark(scope, watermark, stats.avg_ltv)
        score_referrals.on_watermark(partition, watermark)  # referrals (issue 6)
    for partition, (scope, n) in counted.items():
        scope.enter()
        score_churn.checkpoint(partition, settings.checkpoint_events, n)
        metrics.set("watermark_ms", partition_stats(partition).watermark(_LATENESS_MS), str(partition))
    await _send_owed(owed)


async def _send_owed(owed: list[_Owed]) -> None:
    """Each owed user's profile and list: to Kafka now (flushed before the batch's commit), and
    to Redis in one pipeline per kind (under the publish lock: Redis in the order of Kafka)."""
    if owed:
        async with publish_lock:
            await _send_owed_locked(owed)


async def _send_owed_locked(owed: list[_Owed]) -> None:
    profiles: list[tuple[str, bytes]] = []
    lists: list[tuple[str, bytes]] = []
    for o in owed:
        stats = partition_stats(o.partition)
        value = profile_value(o.state, o.partition, stats)
        await send_profile(o.user_id, value, o.partition)
        profiles.append((o.user_id, value))
        rec = rec_value(o.state, o.trigger)
        if rec is None:
            pending_recs[o.user_id] = o.trigger
            continue
        pending_recs.pop(o.user_id, None)
        await send_recommendations(o.user_id, rec, o.partition)
        lists.append((o.user_id, rec))
    if profiles:
        await serving.put_many("profile", profiles)
    if lists:
        await serving.put_many("rec", lists)
        attribution_gauges()
