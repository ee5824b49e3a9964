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

The folding itself is :func:`models.step.step` (the same code ``coursepulse eval`` runs): this
agent reads the batch's states through the scope, passes them and the partition's models
(:data:`streams.partitions.registry`) to the step, then writes and sends what the step returns.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from models.profile import DAY_MS, PartitionStats, UserState
from models.recommend import CoocRises, RowUpdate
from models.step import StepResult, UserOutcome, list_due, step
from schemas.codec import INPUT_TYPES, RejectedRecord, dead_letter, decode_event, encode
from streams import tables, topics
from streams.app import app, settings
from streams.commits import release_unprocessed
from streams.continuity import continuity, records_between
from streams.metrics import metrics
from streams.partition_models import step_config
from streams.partitioning import partition_for
from streams.partitions import registry
from streams.providers import provide
from streams.publish import (
    attribution_gauges,
    outbox,
    profile_value,
    ranked_lists,
    rec_record,
    send_alert,
    send_candidate,
    send_link,
    send_profile,
    send_recommendations,
)
from streams.runtime import PartitionScope, handover, index, publish_lock, rules, serving

__all__ = ["cooc_bundles", "ingest", "owner_of", "partition_stats", "process_batch"]

log = logging.getLogger(__name__)

_PREFIX_LEN = len(settings.topic_prefix)
_CONTINUITY = settings.offset_continuity
continuity.track(settings.topic(name) for name in topics.INPUT_TOPICS)
_MAX_FUTURE_MS = int(settings.max_future_s * 1000)
_HL_MS = settings.half_life_days * DAY_MS
_STEP = step_config(settings, rules)
_reroute_topics: dict[str, Any] = {}


@provide("partition_stats")
def partition_stats(partition: int) -> PartitionStats:
    """This worker's view of a partition's stats, loaded from the table on first use."""
    return registry.models(partition).stats


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


async def process_batch(batch) -> None:  # noqa: ANN001 - faust events
    """Fold a batch of input events, partition by partition (one step each), and send what it owes."""
    by_partition: dict[int, list[tuple[Any, Any]]] = {}
    #: users with an event the partition's previous owner may have processed: their list is owed
    redelivered: set[str] = set()
    ends: dict[Any, int] = {}  # topic-partition -> its redelivery end, looked up once a batch
    accepted = 0
    for event in batch:
        message = event.message
        if _CONTINUITY and not continuity.accept(message.topic, message.partition, message.offset):
            release_unprocessed(app.consumer, message)  # comes again, in order, after the heal
            continue
        accepted += 1
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
        by_partition.setdefault(message.partition, []).append((event, ev))
        end = ends.get(message.tp)
        if end is None:
            end = ends[message.tp] = registry.redelivery_end(message.tp, app.consumer)
        if message.offset < end:
            redelivered.add(ev.user_id)

    if accepted:
        continuity.batch_accepted()
    rises = CoocRises(completion=rules.completion)  # every partition's rises: one kernel call
    results: list[tuple[PartitionScope, StepResult]] = []
    last_ts = 0
    for items in by_partition.values():
        scope = PartitionScope(items[0][0])
        scope.enter()  # model loads below read this partition's tables
        models = registry.models(scope.partition)
        events = [ev for _, ev in items]
        states: dict[str, UserState | None] = {}
        for ev in events:
            if ev.user_id not in states:
                raw = scope.get(tables.users, ev.user_id)
                states[ev.user_id] = UserState.from_bytes(raw) if raw else None

        def get_state(user_id: str, scope: PartitionScope = scope) -> UserState | None:
            raw = scope.get(tables.users, user_id)
            return UserState.from_bytes(raw) if raw else None

        result = step(events, states, models, _STEP, get_state=get_state, rises=rises, title_of=_title_of)
        for outcome in result.users:
            last_ts = max(last_ts, outcome.trigger.ts)
        for (name, label), n in result.counts.items():
            metrics.inc(name, label, by=n)
        failed = {user_id for user_id, _ in result.failed}
        for event, ev in items:
            if ev.user_id in failed:
                exc = next(e for u, e in result.failed if u == ev.user_id)
                await _reject(event.message, RejectedRecord(f"internal error: {exc!r}", kind="internal"))
        results.append((scope, result))
    # every list the batch owes, ranked in one call; each published only if it changed (or aged,
    # or may be a redelivery's), which the state records, so the decision comes before the write
    owed = [o for _, result in results for o in result.users]
    lists = ranked_lists([(o.state, o.trigger) for o in owed])
    publish = [list_due(o.state, o.trigger, items or [], _STEP, force=o.repeated or o.user_id in redelivered)
               for o, items in zip(owed, lists, strict=True)]
    for scope, result in results:
        for outcome in result.users:
            if outcome.write:
                # a repeat is a redelivery: the local store (RocksDB survives a kill -9) may hold
                # state whose changelog record died with the producer's buffer, and the repeats
                # would then change nothing and write nothing; writing the state again lets the
                # changelog catch up with what the user's outputs are built from
                scope.put(tables.users, outcome.user_id, outcome.state.to_bytes())
    # the co-occurrence gains of the whole batch, merged per course row, in one kernel call
    await _flush_batch(rises.merged_updates(_HL_MS), results, list(zip(owed, lists, publish, strict=True)))
    if by_partition:
        metrics.set("event_lag_ms", time.time() * 1000 - last_ts)


def _title_of(course_id: str) -> str:
    i = index.pos.get(course_id)
    return index.meta[i].title if i is not None else course_id


async def _flush_batch(updates: list[RowUpdate], results: list[tuple[PartitionScope, StepResult]],
                       owed: list[tuple[UserOutcome, Any, bool]]) -> None:
    """Sends and per-partition writes of a batch, after every partition's step."""
    for partition, bundle in cooc_bundles(updates, topics.course_cooc.partitions or settings.partitions).items():
        outbox.add(topics.course_cooc, str(partition).encode(), orjson.dumps({"updates": bundle}), partition)
        metrics.inc("cooc_bundles_sent")
    metrics.inc("cooc_updates_sent", by=len(updates))
    for _, result in results:
        for link in result.links:  # share/conversion -> referral-links (attribute_referrals)
            send_link(link)
    for _, result in results:
        for decision in result.candidates:
            send_candidate(decision, result.partition)
    for scope, result in results:
        partition = result.partition
        models = registry.models(partition)
        if result.churn_params is not None:  # to every worker's merge (this one's has it already)
            outbox.add(topics.churn_model, str(partition).encode(),
                       orjson.dumps({"partition": partition, "params": result.churn_params}), 0)
            metrics.inc("churn_params_sent")
        if result.write_stats:
            scope.put(tables.partition_stats, str(partition), models.stats.to_dict())
            for alert in result.alerts:
                send_alert(alert, partition)
            metrics.set("churn_drift_count", models.retention.churn.classifier.drift_count, str(partition))
        if result.applied:
            _checkpoint(scope, models, result.applied)
        metrics.set("watermark_ms", models.stats.watermark(_STEP.lateness_ms), str(partition))
    await _send_owed(owed)
    await outbox.send()  # what no owed user's publish sent (nobody owed, or records queued since)


def _checkpoint(scope: PartitionScope, models: Any, applied: int) -> None:
    """Count the events applied; write the partition's model checkpoints every
    ``COURSEPULSE_CHECKPOINT_EVENTS`` (with an event of the partition current)."""
    partition, every = models.partition, settings.checkpoint_events
    if registry.checkpoint_due("retention", partition, every, applied):
        scope.put(tables.retention, str(partition), models.retention.checkpoint())
        metrics.inc("retention_checkpoints")
    if registry.checkpoint_due("referral", partition, every, applied):
        scope.put(tables.referral_models, str(partition), models.referrals.checkpoint())
        metrics.set("referral_model_examples", models.referrals.positives + models.referrals.negatives, str(partition))
        metrics.set("referral_model_auc", float(models.referrals.metric.get()), str(partition))


async def _send_owed(owed: list[tuple[UserOutcome, Any, bool]]) -> None:
    """Each owed user's profile, and their list where it is published (``(outcome, items,
    publish)``): to Kafka now (flushed before the batch's commit), and to Redis in one pipeline
    per kind (under the publish lock: Redis in the order of Kafka)."""
    if owed:
        async with publish_lock:
            await _send_owed_locked(owed)


async def _send_owed_locked(owed: list[tuple[UserOutcome, Any, bool]]) -> None:
    profiles: list[tuple[str, bytes]] = []
    lists: list[tuple[str, bytes]] = []
    for o, items, publish in owed:
        partition = o.trigger.partition
        value = profile_value(o.state, partition, partition_stats(partition))
        send_profile(o.user_id, value, partition)
        profiles.append((o.user_id, value))
        if not items:  # nothing to rank yet (no neighbour list): ranked again soon (flush_pending)
            handover.owe_list(o.user_id, o.trigger)
            continue
        handover.listed(o.user_id)
        if not publish:  # the same list as the last one published
            metrics.inc("recommendations_unchanged")
            continue
        rec = rec_record(o.state, o.trigger, items)
        send_recommendations(o.user_id, rec, partition)
        lists.append((o.user_id, rec))
    await outbox.send()  # Kafka before Redis, under the publish lock
    if profiles:
        await serving.put_many("profile", profiles)
    if lists:
        await serving.put_many("rec", lists)
        attribution_gauges()
