"""Referral credits into the sharer's state; referral propensity; ``referral-candidates``.

``referral-credits`` is keyed by the sharer's user_id, so it is partitioned like the input topics
and the ``users`` table: the agent here updates the sharer's ``UserState.referrals`` (read,
modify, write with no await in between) on the partition that owns the sharer. On the ingest
path the step (:func:`models.step.step`) counts shares by channel, lets the propensity model
snapshot, checks the candidate rule and lets negative labels expire when the watermark moves.

One :class:`models.referrals.ReferralModels` per partition, in the worker's partition registry
(``streams.partitions``): checkpointed to ``referral-models`` every ``COURSEPULSE_CHECKPOINT_EVENTS``
events and restored on first use, so it moves with the partition. A candidate's cool-down is
kept in the user's state, so it survives restarts too.
"""

from __future__ import annotations

import logging

import orjson

from models.profile import UserState
from models.referrals import ReferralModels, mark_candidate, record_credit
from streams import tables, topics
from streams.app import app, settings
from streams.metrics import metrics
from streams.partitions import registry
from streams.publish import outbox, profile_value, send_candidate, send_profile
from streams.runtime import PartitionScope, publish_lock, serving

__all__ = ["score_referrals"]

log = logging.getLogger(__name__)


def _checkpoint(scope: PartitionScope, rm: ReferralModels) -> None:
    """Count a credit; write the partition's checkpoint every ``checkpoint_events`` (in a stream)."""
    if not registry.checkpoint_due("referral", scope.partition, settings.checkpoint_events):
        return
    scope.put(tables.referral_models, str(scope.partition), rm.checkpoint())
    metrics.set("referral_model_examples", rm.positives + rm.negatives, str(scope.partition))
    metrics.set("referral_model_auc", float(rm.metric.get()), str(scope.partition))


@app.agent(topics.referral_credits)
async def score_referrals(stream):  # noqa: ANN001 - faust stream
    """Per credit: update the sharer's referral stats, teach the model, check the candidate rule."""
    async for event in stream.events():
        message = event.message
        scope = PartitionScope(event)  # the credit is keyed by the sharer: their partition
        try:
            credit = orjson.loads(message.value)
            sharer = credit["sharer"]
            raw = scope.get(tables.users, sharer)
            state = UserState.from_bytes(raw) if raw else UserState(sharer, partition=message.partition)
            state.referrals, applied = record_credit(state.referrals, credit)
            ts = int(credit["ts"])
        except (ValueError, KeyError, TypeError) as exc:  # our own topic: a bug, not input
            log.error("dropping malformed referral credit at offset %d: %s", message.offset, exc)
            metrics.inc("referral_credits_malformed")
            continue
        if not applied:
            metrics.inc("referral_duplicates", "credit")
            continue
        if state.partition not in (-1, message.partition):
            log.warning("credit for %s on partition %d, but the user lives on %d", sharer, message.partition,
                        state.partition)
            metrics.inc("referral_partition_mismatch")
        scope.enter()  # the partition's models may be loaded from its tables
        pm = registry.models(message.partition)
        rm = pm.referrals
        candidate = None
        if credit["credited"]:
            rm.on_credit(state, ts)
            now = max(ts, state.last_ts)
            candidate = rm.decide(state, now)
            if candidate is not None:
                state.referrals = mark_candidate(state.referrals, now)
                metrics.inc("referral_candidates", candidate.incentive.split(":")[0])
        scope.put(tables.users, sharer, state.to_bytes())
        metrics.inc("referral_credits_applied", "credited" if credit["credited"] else "outside_window")
        _checkpoint(scope, rm)
        if candidate is not None:
            send_candidate(candidate, message.partition)
        # the sharer's profile changed: publish it before this credit is acknowledged
        async with publish_lock:  # Redis in the order of Kafka (the ingest batch publishes too)
            scope.enter()
            value = profile_value(state, message.partition, pm.stats)
            send_profile(sharer, value, message.partition)
            await outbox.send()  # the candidate and the profile; Kafka before Redis
            await serving.put_many("profile", [(sharer, value)])
